package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ferrybridge/ferry/client"
)

// A portal backend submits a citizen's query and waits for its result.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	token, err := os.ReadFile("portal.token") // from ferryctl clients add --token-file
	if err != nil {
		log.Print(err)
		return
	}
	c, err := client.New("https://dmz.platform.example:8443", strings.TrimSpace(string(token)))
	if err != nil {
		log.Fatal(err)
	}
	acc, err := c.Submit(ctx, client.Submission{
		Operation: "violations.query",
		Params:    map[string]any{"plate": "浙A94621"},
		Subject:   "330106199101300696", // the citizen the portal authenticated
	})
	switch {
	case errors.Is(err, client.ErrForbiddenSubject):
		log.Print("that plate's records are not this citizen's to see")
		return
	case err != nil:
		log.Fatal(err)
	}
	req, err := c.Wait(ctx, acc.ID)
	if err != nil {
		log.Fatal(err)
	}
	if err := req.Err(); errors.Is(err, client.ErrRateLimited) {
		log.Printf("too many queries for this citizen; again in %v", err.(*client.Error).RetryAfter)
		return
	}
	var violations []map[string]any
	if err := req.Rows(&violations); err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(violations), "violations")
}

// A receiver of result callbacks checks each one's signature.
func ExampleVerifyCallback() {
	secret := []byte("the bytes after whsec_, base64-decoded")
	http.HandleFunc("POST /ferry/results", func(w http.ResponseWriter, r *http.Request) {
		req, err := client.VerifyCallback(secret, r)
		if err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// Process r.Header.Get("webhook-id") once: retries repeat it.
		fmt.Println(req.ID, req.Status)
		w.WriteHeader(http.StatusNoContent)
	})
}
