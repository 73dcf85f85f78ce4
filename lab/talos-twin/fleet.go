package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"sync"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// nodeSpec is one entry of the nodes file.
type nodeSpec struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
	// UserData is a file with the machine's user data (a cloud server's): read at boot, see bootUserData
	UserData string `json:"user_data,omitempty"`
}

// fleet holds every node and its listener; one process, so nodes can answer for each other the way
// apid proxies a request to the node named in the "nodes" metadata.
type fleet struct {
	mu        sync.Mutex
	stateDir  string
	port      int
	nodes     map[string]*node // by IP
	servers   map[string]*grpc.Server
	lastBytes []byte
	issuers   sync.Map
	cp        *controlPlane // nil-safe: set by main
	stopped   bool          // stopAll ran: no node is served again (profile.go)
}

func newFleet(stateDir string, port int) *fleet {
	return &fleet{stateDir: stateDir, port: port, nodes: map[string]*node{}, servers: map[string]*grpc.Server{}}
}

func (f *fleet) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()

	return len(f.nodes)
}

// all is every node served, in a stable order (by IP).
func (f *fleet) all() []*node {
	f.mu.Lock()
	defer f.mu.Unlock()

	out := make([]*node, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, n)
	}

	sort.Slice(out, func(i, j int) bool { return out[i].ip < out[j].ip })

	return out
}

// lookup finds a node by IP or name (talosctl -n accepts either, real apid resolves names by DNS).
func (f *fleet) lookup(target string) *node {
	f.mu.Lock()
	defer f.mu.Unlock()

	if n, ok := f.nodes[target]; ok {
		return n
	}

	for _, n := range f.nodes {
		if n.name == target {
			return n
		}
	}

	return nil
}

func readNodes(path string) ([]nodeSpec, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}

	var specs []nodeSpec
	if err = json.Unmarshal(data, &specs); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}

	seen := map[string]bool{}

	for _, s := range specs {
		if s.Name == "" {
			return nil, nil, fmt.Errorf("%s: a node without a name", path)
		}

		if _, err = netip.ParseAddr(s.IP); err != nil {
			return nil, nil, fmt.Errorf("%s: node %q: %w", path, s.Name, err)
		}

		if seen[s.Name] || seen["ip:"+s.IP] {
			return nil, nil, fmt.Errorf("%s: node %q or IP %s listed twice", path, s.Name, s.IP)
		}

		seen[s.Name], seen["ip:"+s.IP] = true, true
	}

	return specs, data, nil
}

// sync starts listeners for new nodes and stops those of nodes no longer listed.
func (f *fleet) sync(path string) error {
	specs, data, err := readNodes(path)
	if err != nil {
		return err
	}

	f.mu.Lock()
	defer f.mu.Unlock()

	if bytes.Equal(data, f.lastBytes) {
		return nil
	}

	wanted := map[string]nodeSpec{}
	for _, s := range specs {
		wanted[s.IP] = s
	}

	for ip, n := range f.nodes {
		if s, ok := wanted[ip]; ok && s.Name == n.name {
			continue
		}

		if srv := f.servers[ip]; srv != nil { // nil while the node installs and reboots
			srv.Stop()
		}

		delete(f.servers, ip)
		delete(f.nodes, ip)
		log.Printf("talos-twin: node %s (%s) removed", n.name, ip)
	}

	var failed []string

	for ip, s := range wanted {
		if _, ok := f.nodes[ip]; ok {
			continue
		}

		n, err := loadNode(f.stateDir, s.Name, ip, &f.issuers)
		if err == nil {
			err = n.bootUserData(s.UserData)
		}

		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", s.Name, err))

			continue
		}

		srv, err := f.serve(n)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", s.Name, err))

			continue
		}

		f.nodes[ip], f.servers[ip] = n, srv
		log.Printf("talos-twin: node %s listening on %s (%s mode)", n.name, net.JoinHostPort(ip, strconv.Itoa(f.port)), n.modeName())
	}

	if len(failed) > 0 {
		// retried on the next read: lastBytes stays unset
		f.lastBytes = nil

		return fmt.Errorf("nodes not started: %v", failed)
	}

	f.lastBytes = data

	return nil
}

func (f *fleet) serve(n *node) (*grpc.Server, error) {
	lis, err := net.Listen("tcp", net.JoinHostPort(n.ip, strconv.Itoa(f.port)))
	if err != nil {
		return nil, err
	}

	// the TLS settings are chosen per handshake: the node's mode can change under a running listener
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return n.tlsConfig()
	}}

	api := &machineAPI{fleet: f}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConfig)),
		grpc.ChainUnaryInterceptor(api.unaryInterceptor(n)),
		grpc.ChainStreamInterceptor(api.streamInterceptor(n)),
	)
	machine.RegisterMachineServiceServer(srv, api)

	go func() {
		if err := srv.Serve(lis); err != nil {
			log.Printf("talos-twin: node %s: %v", n.name, err)
		}
	}()

	return srv, nil
}

func (f *fleet) stopAll() {
	f.mu.Lock()
	defer f.mu.Unlock()

	f.stopped = true

	for ip, srv := range f.servers {
		srv.Stop()
		delete(f.servers, ip)
	}
}
