// Package deploy holds ferry's deployment files: the systemd units in
// systemd/. It has no code; its tests check the files (see
// docs/operations.md, "Running under systemd").
package deploy
