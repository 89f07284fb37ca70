// Package docs holds the documents the agents serve: the DMZ API's
// OpenAPI 3.1 contract (openapi.yaml), which the DMZ agent answers at
// GET /v1/openapi.yaml. The other files of this directory are the
// project's documentation.
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
