// Opens one sealed value with sealed-secrets' own pkg/crypto (HybridDecrypt), as the controller does.
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/bitnami/sealed-secrets/pkg/crypto"
)

func main() {
	keyPEM, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	block, _ := pem.Decode(keyPEM)
	var key *rsa.PrivateKey
	if parsed, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		key = parsed
	} else {
		any, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			panic(err)
		}
		key = any.(*rsa.PrivateKey)
	}
	sealed, err := base64.StdEncoding.DecodeString(os.Args[2])
	if err != nil {
		panic(err)
	}
	clear, err := crypto.HybridDecrypt(rand.Reader, map[string]*rsa.PrivateKey{"layer00": key}, sealed, []byte(os.Args[3]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	os.Stdout.Write(clear)
}
