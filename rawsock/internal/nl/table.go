package nl

import "regexp"

// TablePrefix starts the name of every nftables table the RST guard
// creates: TablePrefix + "<pid>_<8 hex digits>".
const TablePrefix = "synprobe_"

// GuardTableName matches the names of the RST guard's tables; its submatch
// is the pid of the process that made one.
var GuardTableName = regexp.MustCompile(`^` + TablePrefix + `([0-9]+)_[0-9a-f]{8}$`)
