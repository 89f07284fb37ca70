package config

import (
	"errors"

	"go.yaml.in/yaml/v3"
)

// Problems collects the problems a Validate method finds, so that it can
// report every one of them rather than only the first. Each is an *Error
// made by FieldError against File and Root.
//
//	p := config.Problems{File: c.file, Root: c.root}
//	if c.Listen == "" {
//		p.Add("required: the HTTP API's host:port", "listen")
//	}
//	return p.Err()
type Problems struct {
	File string     // the config file, named in every error
	Root *yaml.Node // its node tree, for lines; nil if unknown
	errs []error
}

// Add records msg as a problem of the field at path (see FieldError).
func (p *Problems) Add(msg string, path ...string) {
	p.errs = append(p.errs, FieldError(p.File, p.Root, msg, path...))
}

// Len returns the number of problems recorded.
func (p *Problems) Len() int { return len(p.errs) }

// Err returns nil if no problem was recorded, else the problems joined
// with [errors.Join] in the order they were added: errors.As finds the
// first *Error, and Error() prints one problem per line.
func (p *Problems) Err() error { return errors.Join(p.errs...) }
