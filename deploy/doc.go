// Package deploy holds ferry's deployment files: the systemd units and the
// daily check's timer in systemd/, the users (sysusers.d/), the directory
// layout (tmpfiles.d/) and example configs (etc/) that `make install`
// installs, and the Prometheus alert rules (prometheus/) and Grafana
// dashboard (grafana/) for the agents' metrics. It has no code; its tests
// check the files: the units through systemd-analyze, the install into a
// scratch root, the example configs through the agents' own loaders, and
// every metric the rules and the dashboard name against package metrics
// (see docs/operations.md).
package deploy
