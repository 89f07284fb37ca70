package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"

	"github.com/ferrybridge/ferry/internal/audit"
)

// journal records an admin action done to the zone whose key directory
// is dir in that zone's admin journal, which the zone's agent takes into
// its audit log (audit.AppendJournal). The action is done when journal
// is called; a journal that cannot be written is an error that says so.
func journal(dir, action, detail string, count int64) error {
	e := audit.Entry{Event: audit.EventAdmin, Actor: operator(), Decision: action, Count: count, Detail: detail}
	if err := audit.AppendJournal(dir, e); err != nil {
		return withHint(fmt.Errorf("%s was done, but not recorded: %w", action, err),
			"the zone's audit log will not show it: record it by other means, and make "+dir+"/"+audit.JournalFile+" writable")
	}
	return nil
}

// operator names who runs ferryctl, for the admin journal: the login
// name of the user, and the user who ran sudo when it was used.
func operator() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if name == "" {
		name = "uid " + strconv.Itoa(os.Getuid())
	}
	if s := os.Getenv("SUDO_USER"); s != "" && s != name {
		name += " (sudo by " + s + ")"
	}
	return name
}
