package cli

import (
	"fmt"
	"os/user"
	"strconv"
)

// Least privilege (docs/privileges.md): once its sockets, packet ring and
// RST guard exist, a run keeps no capability (DropPrivileges), and a root
// run leaves uid 0 too, for the account PlanDrop chooses.

// NobodyID is the account a root run becomes when neither -Z nor sudo
// names one and the passwd database has no "nobody".
const NobodyID = 65534

// DropSpec says what a run gives up once set-up is done, besides every
// capability: whether it leaves uid 0, and for whom.
type DropSpec struct {
	SetUID   bool
	UID, GID int
	Who      string // for messages
}

// Account is a user of the passwd database.
type Account struct {
	Name     string
	UID, GID int
}

// LookupAccount finds a user by name, or by number.
func LookupAccount(name string) (Account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return Account{}, err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return Account{}, fmt.Errorf("user %s has no numeric ids", name)
	}
	return Account{Name: u.Username, UID: uid, GID: gid}, nil
}

// PlanDrop chooses the account a root run becomes after set-up: -Z USER;
// else the user who ran sudo (SUDO_UID, SUDO_GID); else nobody. -Z root
// and --keep-root keep uid 0 (without capabilities all the same). Its
// errors are UsageErrors.
func PlanDrop(name string, keepRoot bool, getenv func(string) string, lookup func(string) (Account, error)) (DropSpec, error) {
	switch {
	case keepRoot && name != "":
		return DropSpec{}, Usagef("-Z and --keep-root exclude each other")
	case keepRoot:
		return DropSpec{}, nil
	case name != "":
		a, err := lookup(name)
		if err != nil {
			return DropSpec{}, Usagef("-Z %s: no such user", name)
		}
		if a.UID == 0 {
			return DropSpec{}, nil
		}
		return DropSpec{SetUID: true, UID: a.UID, GID: a.GID, Who: "-Z " + name}, nil
	}
	if uid, err := strconv.Atoi(getenv("SUDO_UID")); err == nil && uid > 0 {
		gid, err := strconv.Atoi(getenv("SUDO_GID"))
		if err != nil || gid < 0 {
			gid = uid
			if a, err := lookup(strconv.Itoa(uid)); err == nil {
				gid = a.GID
			}
		}
		return DropSpec{SetUID: true, UID: uid, GID: gid, Who: "SUDO_UID " + strconv.Itoa(uid)}, nil
	}
	if a, err := lookup("nobody"); err == nil && a.UID > 0 {
		return DropSpec{SetUID: true, UID: a.UID, GID: a.GID, Who: "nobody"}, nil
	}
	return DropSpec{SetUID: true, UID: NobodyID, GID: NobodyID, Who: "nobody"}, nil
}

// PlanCaller is PlanDrop for a caller of real uid uid: a root caller's
// run leaves uid 0 as PlanDrop chooses; any other caller stays who it is
// (it could not change its uid: no CAP_SETUID, and it must not) and may
// name only itself with -Z. Every verb plans its drop through it. Its
// errors are UsageErrors.
func PlanCaller(uid int, name string, keepRoot bool, getenv func(string) string, lookup func(string) (Account, error)) (DropSpec, error) {
	if uid == 0 {
		return PlanDrop(name, keepRoot, getenv, lookup)
	}
	if name != "" {
		if a, err := lookup(name); err != nil || a.UID != uid {
			return DropSpec{}, Usagef("-Z %s: only root can choose the user synprobe becomes after set-up", name)
		}
	}
	return DropSpec{}, nil
}
