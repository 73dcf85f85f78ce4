package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// etcdClient speaks etcd's JSON gateway (/v3/cluster/member/*) with the API server's client certificate;
// enough for membership, without pulling etcd's Go client into the twin.
type etcdClient struct {
	http *http.Client
}

type etcdMember struct {
	ID         string   `json:"ID"` // uint64 as a string, as the gateway encodes it
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

func (m etcdMember) id() uint64 {
	id, _ := strconv.ParseUint(m.ID, 10, 64) //nolint:errcheck

	return id
}

func newEtcdClient(caFile, certFile, keyFile string) (*etcdClient, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)

	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}

	transport := &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair},
	}}

	return &etcdClient{http: &http.Client{Transport: transport, Timeout: 5 * time.Second}}, nil
}

// call posts to the first client URL that answers.
func (e *etcdClient) call(urls []string, path string, body, out any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}

	errs := []error{errors.New("no etcd member to ask")}

	for _, base := range urls {
		resp, err := e.http.Post(base+path, "application/json", bytes.NewReader(data))
		if err != nil {
			errs = append(errs, err)

			continue
		}

		payload, err := io.ReadAll(resp.Body)
		resp.Body.Close() //nolint:errcheck

		if err != nil {
			errs = append(errs, err)

			continue
		}

		if resp.StatusCode != http.StatusOK {
			errs = append(errs, fmt.Errorf("%s%s: %s: %s", base, path, resp.Status, payload))

			continue
		}

		return json.Unmarshal(payload, out)
	}

	return errs[len(errs)-1]
}

func (e *etcdClient) listMembers(urls []string) ([]etcdMember, error) {
	var answer struct {
		Members []etcdMember `json:"members"`
	}

	err := e.call(urls, "/v3/cluster/member/list", map[string]any{"linearizable": true}, &answer)

	return answer.Members, err
}

// addMember adds a member by its peer URL and returns the member list including it.
func (e *etcdClient) addMember(urls []string, peerURL string) ([]etcdMember, error) {
	members, err := e.listMembers(urls)
	if err != nil {
		return nil, err
	}

	for _, m := range members {
		for _, peer := range m.PeerURLs {
			if peer == peerURL {
				return members, nil // added before, not started yet: a retry after a failed start
			}
		}
	}

	var answer struct {
		Members []etcdMember `json:"members"`
	}

	err = e.call(urls, "/v3/cluster/member/add", map[string]any{"peerURLs": []string{peerURL}}, &answer)

	return answer.Members, err
}

func (e *etcdClient) removeMember(urls []string, name string) error {
	members, err := e.listMembers(urls)
	if err != nil {
		return err
	}

	for _, m := range members {
		if m.Name == name {
			var answer map[string]any

			return e.call(urls, "/v3/cluster/member/remove", map[string]any{"ID": m.ID}, &answer)
		}
	}

	return nil
}
