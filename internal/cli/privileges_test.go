package cli

import (
	"errors"
	"strings"
	"testing"
)

func TestPlanDrop(t *testing.T) {
	users := map[string]Account{
		"root": {"root", 0, 0}, "0": {"root", 0, 0},
		"nobody": {"nobody", 65534, 65534}, "65534": {"nobody", 65534, 65534},
		"alice": {"alice", 1000, 1000}, "1000": {"alice", 1000, 1000},
	}
	lookup := func(name string) (Account, error) {
		if a, ok := users[name]; ok {
			return a, nil
		}
		return Account{}, errors.New("unknown user")
	}
	noNobody := func(name string) (Account, error) {
		if name == "nobody" {
			return Account{}, errors.New("unknown user")
		}
		return lookup(name)
	}
	for _, tt := range []struct {
		name     string
		keepRoot bool
		env      map[string]string
		lookup   func(string) (Account, error)
		want     DropSpec
		err      string
	}{
		{name: "", want: DropSpec{true, 65534, 65534, "nobody"}},
		{name: "", lookup: noNobody, want: DropSpec{true, NobodyID, NobodyID, "nobody"}},
		{keepRoot: true, env: map[string]string{"SUDO_UID": "1000"}, want: DropSpec{}},
		{name: "alice", env: map[string]string{"SUDO_UID": "1234"}, want: DropSpec{true, 1000, 1000, "-Z alice"}},
		{name: "1000", want: DropSpec{true, 1000, 1000, "-Z 1000"}},
		{name: "root", want: DropSpec{}},
		{name: "mallory", err: "-Z mallory: no such user"},
		{name: "alice", keepRoot: true, err: "exclude each other"},
		{env: map[string]string{"SUDO_UID": "1234", "SUDO_GID": "1235"}, want: DropSpec{true, 1234, 1235, "SUDO_UID 1234"}},
		{env: map[string]string{"SUDO_UID": "1000"}, want: DropSpec{true, 1000, 1000, "SUDO_UID 1000"}},
		{env: map[string]string{"SUDO_UID": "4321"}, want: DropSpec{true, 4321, 4321, "SUDO_UID 4321"}},
		{env: map[string]string{"SUDO_UID": "0", "SUDO_GID": "0"}, want: DropSpec{true, 65534, 65534, "nobody"}},
		{env: map[string]string{"SUDO_UID": "x"}, want: DropSpec{true, 65534, 65534, "nobody"}},
		{env: map[string]string{"SUDO_UID": "-5"}, want: DropSpec{true, 65534, 65534, "nobody"}},
	} {
		lk := tt.lookup
		if lk == nil {
			lk = lookup
		}
		got, err := PlanDrop(tt.name, tt.keepRoot, func(k string) string { return tt.env[k] }, lk)
		if tt.err != "" {
			var u *UsageError
			if !errors.As(err, &u) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("PlanDrop(%q, %v, %v) = %v, want usage error %q", tt.name, tt.keepRoot, tt.env, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("PlanDrop(%q, %v, %v) = %+v, %v; want %+v", tt.name, tt.keepRoot, tt.env, got, err, tt.want)
		}
	}
}

// TestPlanCaller: a caller other than root never plans to change its uid
// (setgroups and setresuid would fail without CAP_SETGID and CAP_SETUID:
// a setcap'd trace failed so), whatever SUDO_UID says; -Z names itself
// only. Root plans as PlanDrop does.
func TestPlanCaller(t *testing.T) {
	lookup := func(name string) (Account, error) {
		switch name {
		case "alice", "1000":
			return Account{"alice", 1000, 1000}, nil
		case "nobody", "65534":
			return Account{"nobody", 65534, 65534}, nil
		case "root", "0":
			return Account{"root", 0, 0}, nil
		}
		return Account{}, errors.New("unknown user")
	}
	env := func(k string) string { return map[string]string{"SUDO_UID": "4242", "SUDO_GID": "4343"}[k] }
	for _, tt := range []struct {
		uid      int
		name     string
		keepRoot bool
		want     DropSpec
		err      string
	}{
		{uid: 1000, want: DropSpec{}},
		{uid: 65534, want: DropSpec{}},
		{uid: 1000, name: "alice", want: DropSpec{}},
		{uid: 1000, keepRoot: true, want: DropSpec{}},
		{uid: 1000, name: "root", err: "-Z root: only root can choose"},
		{uid: 1000, name: "nobody", err: "-Z nobody: only root can choose"},
		{uid: 1000, name: "mallory", err: "-Z mallory: only root can choose"},
		{uid: 0, want: DropSpec{true, 4242, 4343, "SUDO_UID 4242"}},
		{uid: 0, name: "nobody", want: DropSpec{true, 65534, 65534, "-Z nobody"}},
		{uid: 0, keepRoot: true, want: DropSpec{}},
		{uid: 0, name: "mallory", err: "-Z mallory: no such user"},
	} {
		got, err := PlanCaller(tt.uid, tt.name, tt.keepRoot, env, lookup)
		if tt.err != "" {
			var u *UsageError
			if !errors.As(err, &u) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("PlanCaller(%d, %q, %v) = %v, want usage error %q", tt.uid, tt.name, tt.keepRoot, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("PlanCaller(%d, %q, %v) = %+v, %v; want %+v", tt.uid, tt.name, tt.keepRoot, got, err, tt.want)
		}
	}
}
