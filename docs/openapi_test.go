package docs

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestOpenAPI_document: openapi.yaml loads (strictly: the loader refuses
// a key given twice, which a hand-written document may have) as an
// OpenAPI 3.1 document that kin-openapi finds valid, examples included,
// and it has exactly the agent's paths and methods, the bearer
// scheme on the endpoints that need a token and on no other, a summary and
// an operationId for each operation, and the result webhook.
func TestOpenAPI_document(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI)
	if err != nil {
		t.Fatalf("openapi.yaml does not load: %v", err)
	}
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3.1 document: %v", err)
	}

	// The agent's routes (internal/dmz routes), and whether each needs
	// the bearer token.
	want := map[string]bool{
		"POST /v1/requests":     true,
		"GET /v1/requests/{id}": true,
		"GET /v1/operations":    true,
		"GET /v1/openapi.yaml":  false,
		"GET /healthz":          false,
		"GET /readyz":           false,
	}
	got := map[string]bool{}
	ids := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			key := method + " " + path
			// An operation without security of its own takes the
			// document's: the bearer scheme.
			sec := doc.Security
			if op.Security != nil {
				sec = *op.Security
			}
			got[key] = len(sec) > 0
			if len(sec) > 0 && (len(sec) != 1 || sec[0]["bearer"] == nil) {
				t.Errorf("%s: security %v, want the bearer scheme alone", key, sec)
			}
			if op.Summary == "" || op.OperationID == "" {
				t.Errorf("%s: no summary or operationId", key)
			}
			if ids[op.OperationID] {
				t.Errorf("%s: operationId %s used twice", key, op.OperationID)
			}
			ids[op.OperationID] = true
			if op.Responses.Len() == 0 {
				t.Errorf("%s: no responses", key)
			}
			for code, r := range op.Responses.Map() {
				if r.Value == nil || r.Value.Description == nil || strings.TrimSpace(*r.Value.Description) == "" {
					t.Errorf("%s %s: no description", key, code)
				}
			}
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("operations and whether they need a token:\n got %v\nwant %v", got, want)
	}
	if s := doc.Components.SecuritySchemes["bearer"]; s == nil || s.Value.Type != "http" || s.Value.Scheme != "bearer" {
		t.Errorf("security scheme bearer: %+v", s)
	}

	// The result callback, as a 3.1 webhook with its signature headers.
	wh := doc.Webhooks["result"]
	if wh == nil || wh.Post == nil {
		t.Fatal("no POST webhook named result")
	}
	var headers []string
	for _, p := range wh.Post.Parameters {
		if p.Value.In == openapi3.ParameterInHeader && p.Value.Required {
			headers = append(headers, strings.ToLower(p.Value.Name))
		}
	}
	slices.Sort(headers)
	if w := []string{"idempotency-key", "webhook-id", "webhook-signature", "webhook-timestamp"}; !slices.Equal(headers, w) {
		t.Errorf("webhook's required headers %v, want %v", headers, w)
	}
	if wh.Post.RequestBody == nil || wh.Post.RequestBody.Value.Content.Get("application/json") == nil {
		t.Error("webhook without a JSON body")
	}
}
