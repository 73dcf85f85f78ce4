package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"time"

	x509crypto "github.com/siderolabs/crypto/x509"
)

// tlsCache keeps the node's server TLS settings; reset when the active config changes.
type tlsCache struct {
	maintenance *tls.Config
	configured  *tls.Config
}

// tlsConfig is called for every handshake: maintenance mode serves a self-signed certificate and asks
// for no client certificate; a configured node serves a certificate issued by machine.ca and requires a
// client certificate signed by it (or by one of machine.acceptedCAs).
func (n *node) tlsConfig() (*tls.Config, error) {
	n.mu.Lock()
	defer n.mu.Unlock()

	// between the answer to its first apply and the listener closing: the maintenance service has stopped
	if n.installing {
		return nil, fmt.Errorf("node %s: installing", n.name)
	}

	if n.active == nil {
		if n.tls.maintenance == nil {
			cert, err := selfSigned(n.ip)
			if err != nil {
				return nil, err
			}

			n.tls.maintenance = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
				ClientAuth: tls.NoClientCert, NextProtos: []string{"h2"}}
		}

		return n.tls.maintenance, nil
	}

	if n.tls.configured == nil {
		cfg, err := n.configuredTLS()
		if err != nil {
			log.Printf("talos-twin: node %s: TLS handshake refused: %v", n.name, err)

			return nil, fmt.Errorf("node %s: %w", n.name, err)
		}

		n.tls.configured = cfg
	}

	return n.tls.configured, nil
}

func (n *node) configuredTLS() (*tls.Config, error) {
	security := n.active.Machine().Security()

	issuing := security.IssuingCA()
	if issuing == nil || len(issuing.Crt) == 0 {
		return nil, errors.New("machine.ca has no certificate")
	}

	if len(issuing.Key) == 0 {
		key, ok := n.issuers.Load(string(issuing.Crt))
		if !ok {
			return nil, errors.New("no control plane with this machine.ca key is configured yet (workers get their certificate from one)")
		}

		issuing = &x509crypto.PEMEncodedCertificateAndKey{Crt: issuing.Crt, Key: key.([]byte)}
	}

	caCert, err := issuing.GetCert()
	if err != nil {
		return nil, fmt.Errorf("machine.ca.crt: %w", err)
	}

	caKey, err := issuing.GetKey()
	if err != nil {
		return nil, fmt.Errorf("machine.ca.key: %w", err)
	}

	signer, ok := caKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("machine.ca.key is not a signing key")
	}

	pool := x509.NewCertPool()
	pool.AddCert(caCert)

	for _, accepted := range security.AcceptedCAs() {
		if c, err := accepted.GetCert(); err == nil {
			pool.AddCert(c)
		}
	}

	names := append([]string{n.ip, n.name}, security.CertSANs()...)

	leaf, err := issue(caCert, signer, names)
	if err != nil {
		return nil, err
	}

	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{leaf},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, NextProtos: []string{"h2"}}, nil
}

// issue makes a server certificate for names (IPs or DNS names) signed by the CA.
func issue(ca *x509.Certificate, caKey crypto.Signer, names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}

	tmpl := serverTemplate(names)

	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issuing the server certificate: %w", err)
	}

	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}, nil
}

func selfSigned(ip string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}

	tmpl := serverTemplate([]string{ip})

	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}

	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func serverTemplate(names []string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120)) //nolint:errcheck

	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}

	for _, name := range names {
		if ip := net.ParseIP(name); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if name != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, name)
		}
	}

	return tmpl
}
