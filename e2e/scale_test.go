//go:build !soak

package e2e

// soakScale multiplies the requests and the SIGKILLs of the hostile-ferry
// soak; make test runs it at this size, make soak (-tags soak) larger.
const soakScale = 1
