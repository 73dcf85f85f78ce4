package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	x509crypto "github.com/siderolabs/crypto/x509"
)

// authority is a CA from a machine config (cluster.ca, cluster.etcd.ca) that the twin issues from, the way
// Talos' own controllers issue the etcd, API server and admin certificates.
type authority struct {
	cert   *x509.Certificate
	key    crypto.Signer
	crtPEM []byte
}

func newAuthority(pair *x509crypto.PEMEncodedCertificateAndKey, what string) (*authority, error) {
	if pair == nil || len(pair.Crt) == 0 || len(pair.Key) == 0 {
		return nil, fmt.Errorf("%s: certificate and key are needed", what)
	}

	cert, err := pair.GetCert()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}

	key, err := pair.GetKey()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}

	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: the key cannot sign", what)
	}

	return &authority{cert: cert, key: signer, crtPEM: pair.Crt}, nil
}

// leaf is an issued certificate and its key, PEM encoded.
type leaf struct {
	crt, key []byte
}

// issue makes a certificate for names (IPs or DNS names) with the given usages and subject.
func (a *authority) issue(subject pkix.Name, names []string, usages []x509.ExtKeyUsage, lifetime time.Duration) (leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return leaf{}, err
	}

	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return leaf{}, err
	}

	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usages,
	}

	for _, name := range names {
		if ip := net.ParseIP(name); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if name != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, name)
		}
	}

	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return leaf{}, err
	}

	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return leaf{}, err
	}

	return leaf{
		crt: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// write puts the pair at <base>.crt and <base>.key (0600).
func (l leaf) write(base string) error {
	if err := writePrivate(base+".crt", l.crt); err != nil {
		return err
	}

	return writePrivate(base+".key", l.key)
}

var (
	serverAndClient = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	clientOnly      = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	serverOnly      = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
)

func writePrivate(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}

	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}

	return os.Rename(tmp, path)
}

func exists(path string) bool {
	_, err := os.Stat(path)

	return !errors.Is(err, os.ErrNotExist)
}
