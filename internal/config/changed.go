package config

import (
	"reflect"
	"strings"
)

// Changed returns the YAML names of the top-level fields that differ
// between old and new, two values (or pointers to values) of one struct
// type, leaving out the fields named in skip. A reload uses it to name
// the settings that only a restart puts in force.
func Changed(old, new any, skip ...string) []string {
	ov, nv := reflect.Indirect(reflect.ValueOf(old)), reflect.Indirect(reflect.ValueOf(new))
	if ov.Type() != nv.Type() || ov.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := range ov.NumField() {
		f := ov.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		skipped := false
		for _, s := range skip {
			skipped = skipped || s == name
		}
		if !skipped && !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	return out
}
