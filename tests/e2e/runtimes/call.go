// One OpenAI chat call with Go's net/http: no proxy or trust code of its own (the default transport
// reads HTTPS_PROXY, and on Linux crypto/x509 reads SSL_CERT_FILE).
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

func main() {
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	req, err := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("authorization", "Bearer sk-go-test")
	req.Header.Set("x-tapgate-customer-identifier", os.Args[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	fmt.Println("status", resp.StatusCode, "body", len(data) > 0)
}
