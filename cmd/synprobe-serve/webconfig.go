package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"regexp"
	"strings"
	"sync"
)

// webConfigProblem turns an error of exporter-toolkit's web configuration
// file (its YAML decoder's, crypto/tls's, bcrypt's) into what is wrong, in
// the file's own terms and in one line: never the file's text (password
// hashes, keys), never a Go type. known is false for an error it does not
// recognise, whose words it keeps, less anything quoted.
func webConfigProblem(file string, err error) (problem string, known bool) {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if pe.Path == file {
			return "cannot be read: " + pe.Err.Error(), true
		}
		return "tls_server_config: client_ca_file cannot be read: " + pe.Err.Error(), true
	}
	msg := err.Error()
	// Of several decoding errors, the first.
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	msg, _, _ = strings.Cut(strings.TrimSpace(msg), "\n")
	for _, t := range webTranslations() {
		if m := t.re.FindStringSubmatch(msg); m != nil {
			return t.say(m), true
		}
	}
	return quoted().ReplaceAllString(msg, "…"), false
}

type webTranslation struct {
	re  *regexp.Regexp
	say func(m []string) string
}

// webFields are the fields of each part of the web configuration, to name
// what is known when a field is not.
var webFields = map[string]string{
	"web.Config":            "the file's fields are tls_server_config, http_server_config, basic_auth_users, rate_limit",
	"web.TLSConfig":         "tls_server_config's fields are cert, cert_file, key, key_file, client_ca, client_ca_file, client_auth_type, client_allowed_sans, cipher_suites, curve_preferences, min_version, max_version, prefer_server_cipher_suites",
	"web.HTTPConfig":        "http_server_config's fields are http2, headers",
	"web.RateLimiterConfig": "rate_limit's fields are burst, interval",
}

// webKinds says what a Go type of the web configuration holds.
var webKinds = map[string]string{
	"web.Config":               "a map of tls_server_config, http_server_config, basic_auth_users, rate_limit",
	"web.TLSConfig":            "tls_server_config: a map (cert_file, key_file, ...)",
	"web.HTTPConfig":           "http_server_config: a map (http2, headers)",
	"web.RateLimiterConfig":    "rate_limit: a map (burst, interval)",
	"map[string]config.Secret": "basic_auth_users: a map of user: bcrypt hash",
	"config.Secret":            "a bcrypt hash",
	"config.plain":             "a string",
	"map[string]string":        "a map of header: value",
	"bool":                     "true or false",
	"int":                      "a whole number",
	"string":                   "a string",
	"time.Duration":            "a duration with its unit (10s, 1m)",
	"[]string":                 "a list of strings",
	"[]web.Cipher":             "a list of cipher suite names",
	"[]web.Curve":              "a list of curve names",
}

var webTranslations = sync.OnceValue(func() []webTranslation {
	return []webTranslation{
		{regexp.MustCompile(`^line (\d+): field .* not found in type (\S+)$`), func(m []string) string {
			known := webFields[m[2]]
			if known == "" {
				return "line " + m[1] + ": unknown field"
			}
			return "line " + m[1] + ": unknown field (" + known + ")"
		}},
		{regexp.MustCompile(`^line (\d+): cannot unmarshal !!(\w+).* into (\S+)$`), func(m []string) string {
			want := webKinds[m[3]]
			if want == "" {
				want = "a value of another kind"
			}
			return "line " + m[1] + ": a " + yamlKind(m[2]) + " where the field wants " + want
		}},
		{regexp.MustCompile(`^yaml: line (\d+): `), func(m []string) string { return "line " + m[1] + ": not valid YAML" }},
		{regexp.MustCompile(`^yaml: `), func([]string) string { return "not valid YAML" }},
		{regexp.MustCompile(`^crypto/bcrypt: `), func([]string) string {
			return "basic_auth_users: a password that is not a bcrypt hash (htpasswd -nBC 10 USER makes one)"
		}},
		{regexp.MustCompile(`^HTTP header .* can not be configured$`), func([]string) string {
			return "http_server_config: headers: a header that cannot be set (these can: Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)"
		}},
		{regexp.MustCompile(`^invalid value for (\S+)\. Expected one of: (.*), but got`), func(m []string) string {
			return "http_server_config: headers: " + m[1] + ": one of " + strings.Trim(m[2], "[]")
		}},
		{regexp.MustCompile(`^unknown TLS version: `), func([]string) string {
			return "tls_server_config: min_version, max_version: TLS10, TLS11, TLS12 or TLS13"
		}},
		{regexp.MustCompile(`^unknown cipher: `), func([]string) string {
			return "tls_server_config: cipher_suites: a cipher suite Go knows (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, ...)"
		}},
		{regexp.MustCompile(`^unknown curve: `), func([]string) string {
			return "tls_server_config: curve_preferences: CurveP256, CurveP384, CurveP521 or X25519"
		}},
		{regexp.MustCompile(`^invalid ClientAuth: `), func([]string) string {
			return "tls_server_config: client_auth_type: NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
		}},
		{regexp.MustCompile(`^failed to read (cert_file|key_file) \(.*\): .*: ([^:]+)$`), func(m []string) string {
			return "tls_server_config: " + m[1] + " cannot be read: " + m[2]
		}},
		{regexp.MustCompile(`^failed to load X509KeyPair: (?:tls: )?(.*)$`), func(m []string) string {
			return "tls_server_config: the certificate and key are not a pair of PEM blocks that match: " + quoted().ReplaceAllString(m[1], "…")
		}},
		{regexp.MustCompile(`^client CA's have been configured without a Client Auth Policy$`), func([]string) string {
			return "tls_server_config: client_ca_file or client_ca needs a client_auth_type (RequireAndVerifyClientCert, say)"
		}},
		{regexp.MustCompile(`^missing one of (cert or cert_file|key or key_file)$`), func(m []string) string {
			return "tls_server_config: " + m[1] + " is missing"
		}},
	}
})

// yamlKind names a YAML tag's kind.
func yamlKind(tag string) string {
	switch tag {
	case "str":
		return "string"
	case "seq":
		return "list"
	case "map":
		return "map"
	case "int", "float":
		return "number"
	case "bool":
		return "true or false"
	}
	return "value"
}

// webLogHandler keeps the web configuration's errors that exporter-toolkit
// meets after start-up (it reads the file again for every request and TLS
// handshake) to one line of the file's problem, as at start-up, rather
// than its decoder's words, which quote the file.
type webLogHandler struct {
	slog.Handler
	file string
}

var tlsHandshakeError = regexp.MustCompile(`^http: TLS handshake error from (\S+): (.*)$`)

func (h webLogHandler) Handle(ctx context.Context, r slog.Record) error {
	switch {
	case r.Message == "Unable to parse configuration":
		var problem string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				problem, _ = webConfigProblem(h.file, errors.New(a.Value.String()))
			}
			return true
		})
		n := slog.NewRecord(r.Time, slog.LevelError, "web configuration refused: requests answer 500 until it is fixed", r.PC)
		n.AddAttrs(slog.String("file", h.file), slog.String("problem", problem))
		r = n
	case tlsHandshakeError.MatchString(r.Message):
		m := tlsHandshakeError.FindStringSubmatch(r.Message)
		if problem, known := webConfigProblem(h.file, errors.New(m[2])); known {
			n := slog.NewRecord(r.Time, slog.LevelError, "web configuration refused: TLS handshakes fail until it is fixed", r.PC)
			n.AddAttrs(slog.String("file", h.file), slog.String("problem", problem), slog.String("client", m[1]))
			r = n
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h webLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return webLogHandler{h.Handler.WithAttrs(as), h.file}
}

func (h webLogHandler) WithGroup(name string) slog.Handler {
	return webLogHandler{h.Handler.WithGroup(name), h.file}
}
