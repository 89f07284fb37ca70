//go:build soak

package e2e

// soakScale multiplies the requests and the SIGKILLs of the hostile-ferry
// soak: with -tags soak (make soak), 6,000 requests and 22 kills.
const soakScale = 10
