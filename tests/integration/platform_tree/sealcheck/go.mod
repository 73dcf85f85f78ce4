module sealcheck

go 1.26.8

require github.com/bitnami/sealed-secrets v0.40.0

require (
	golang.org/x/crypto v0.56.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
)
