package main

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
)

// controlPlane runs the real Kubernetes control plane behind the twin once a node is bootstrapped: one
// etcd member per configured control plane (the bootstrap node starts the cluster, the others join it)
// and one kube-apiserver on the cluster endpoint, with certificates issued from the machine configs' CAs.
// Everything lives in <state>/_cluster (an underscore: never a node's hostname).
type controlPlane struct {
	fleet                 *fleet
	etcdBin, apiserverBin string
	dir                   string

	mu        sync.Mutex
	etcds     map[string]*process // by node name
	apiserver *process
	api       *kubeAPI
	info      *clusterInfo
	nodes     nodeRegistry
	forwards  apiForwards
	loop      controlLoop // controller manager, scheduler, KWOK (controllers.go)
}

// clusterInfo is what the control plane is made from: the bootstrap node's config.
type clusterInfo struct {
	name, endpoint, endpointHost, serviceCIDR, dnsDomain string
	certSANs                                             []string
	clusterCA, etcdCA                                    *authority
	serviceAccountKey                                    []byte
	adminLifetime                                        time.Duration
}

// member is a control plane that runs (or will run) an etcd member.
type member struct {
	name, ip string
	// bootstrapped: talosctl bootstrap ran on it, so without etcd data it founds a new etcd cluster
	bootstrapped bool
	// configured: when its config was applied (a fresh control plane waits joinDelay before it joins)
	configured time.Time
}

// joinDelay is how long a configured, not bootstrapped control plane waits before it joins the running
// etcd cluster. Talos' etcd service waits for discovery to show the cluster's members ("etcd is waiting to
// join the cluster, if this node is the first node in the cluster, please run `talosctl bootstrap`"); a
// bootstrap in that window founds a second cluster (split brain), which the twin must show.
const joinDelay = 10 * time.Second

func (m member) peerURL() string   { return "https://" + net.JoinHostPort(m.ip, "2380") }
func (m member) clientURL() string { return "https://" + net.JoinHostPort(m.ip, "2379") }

func newControlPlane(f *fleet, etcdBin, apiserverBin string) *controlPlane {
	return &controlPlane{
		fleet: f, etcdBin: etcdBin, apiserverBin: apiserverBin, dir: filepath.Join(f.stateDir, "_cluster"),
		etcds: map[string]*process{},
	}
}

func (c *controlPlane) enabled() bool { return c.etcdBin != "" && c.apiserverBin != "" }

func (c *controlPlane) pki(name string) string { return filepath.Join(c.dir, "pki", name) }

func infoFrom(cfg config.Provider) (*clusterInfo, error) {
	cluster := cfg.Cluster()

	clusterCA, err := newAuthority(cluster.IssuingCA(), "cluster.ca")
	if err != nil {
		return nil, err
	}

	etcdCA, err := newAuthority(cluster.Etcd().CA(), "cluster.etcd.ca")
	if err != nil {
		return nil, err
	}

	sa := cluster.ServiceAccount()
	if sa == nil || len(sa.Key) == 0 {
		return nil, errors.New("cluster.serviceAccount.key is empty")
	}

	endpoint := cluster.Endpoint()
	if endpoint == nil {
		return nil, errors.New("cluster.controlPlane.endpoint is empty")
	}

	services := cluster.Network().ServiceCIDRs()
	if len(services) == 0 {
		services = []string{"10.96.0.0/12"}
	}

	lifetime := cluster.AdminKubeconfig().CertLifetime()
	if lifetime <= 0 {
		lifetime = 365 * 24 * time.Hour
	}

	return &clusterInfo{
		name: cluster.Name(), endpoint: endpoint.String(), endpointHost: endpoint.Hostname(),
		serviceCIDR: strings.Join(services, ","), dnsDomain: cluster.Network().DNSDomain(),
		certSANs: cluster.CertSANs(), clusterCA: clusterCA, etcdCA: etcdCA, serviceAccountKey: sa.Key,
		adminLifetime: lifetime,
	}, nil
}

// run reconciles every second until ctx ends, then stops every process.
func (c *controlPlane) run(ctx context.Context) {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()

	for {
		if err := c.reconcile(); err != nil {
			log.Printf("talos-twin: control plane: %v", err)
		}

		select {
		case <-ctx.Done():
			c.stopAll()

			return
		case <-ticker.C:
		}
	}
}

// configured lists the configured nodes and finds the first bootstrapped one (normally the only one).
func (c *controlPlane) configured() (cps []member, all []*node, bootstrap *node) {
	for _, n := range c.fleet.all() {
		n.mu.Lock()
		if n.active != nil {
			all = append(all, n)

			if n.active.Machine().Type().IsControlPlane() {
				m := member{name: hostnameOf(n), ip: n.ip, bootstrapped: n.state.Bootstrapped}
				if len(n.state.Applies) > 0 {
					m.configured = n.state.Applies[len(n.state.Applies)-1].Time
				}

				cps = append(cps, m)

				if n.state.Bootstrapped && bootstrap == nil {
					bootstrap = n
				}
			}
		}
		n.mu.Unlock()
	}

	// bootstrapped nodes first: they found the etcd cluster (a second one founds a second cluster)
	sort.SliceStable(cps, func(i, j int) bool { return cps[i].bootstrapped && !cps[j].bootstrapped })

	return cps, all, bootstrap
}

//nolint:gocyclo,cyclop
func (c *controlPlane) reconcile() error {
	c.mu.Lock()
	defer c.mu.Unlock()

	cps, all, bootstrap := c.configured()
	if len(cps) == 0 || (bootstrap == nil && c.info == nil) {
		// no cluster (yet, or any more: its nodes are gone); nothing runs
		c.stopLocked()

		return nil
	}

	// the etcd cluster is founded on the bootstrap node; once it runs, it outlives that node's reset
	if c.info == nil {
		bootstrap.mu.Lock()
		info, err := infoFrom(bootstrap.active)
		bootstrap.mu.Unlock()

		if err != nil {
			return err
		}

		c.info = info
		if err = c.writeSharedPKI(); err != nil {
			return err
		}
	}

	// etcd members of control planes that are gone leave the cluster
	wanted := map[string]bool{}
	for _, m := range cps {
		wanted[m.name] = true
	}

	for name, p := range c.etcds {
		if !wanted[name] {
			c.leave(name, p)
		}
	}

	for _, m := range cps {
		if p := c.etcds[m.name]; p != nil && p.alive() {
			continue
		}

		if c.waitsToJoin(m) {
			continue
		}

		if err := c.startEtcd(m); err != nil {
			return fmt.Errorf("etcd on %s: %w", m.name, err)
		}
		// one join per round: the next member is added once this one has started
		if !c.hasEtcdData(m.name) {
			return nil
		}
	}

	if c.apiserver == nil || !c.apiserver.alive() {
		if err := c.startAPIServer(cps); err != nil {
			return fmt.Errorf("kube-apiserver: %w", err)
		}
	}

	c.forwards.sync(controlPlaneIPs(cps), c.apiBackend())

	if err := c.api.ready(); err != nil {
		return nil //nolint:nilerr // still starting: the next round looks again
	}

	if err := c.nodes.reconcile(c.api, all); err != nil {
		return err
	}

	return c.loop.reconcile(c, all)
}

func (c *controlPlane) writeSharedPKI() error {
	info := c.info

	if err := writePrivate(c.pki("ca.crt"), info.clusterCA.crtPEM); err != nil {
		return err
	}

	if err := writePrivate(c.pki("etcd-ca.crt"), info.etcdCA.crtPEM); err != nil {
		return err
	}

	if err := writePrivate(c.pki("service-account.key"), info.serviceAccountKey); err != nil {
		return err
	}

	client, err := info.etcdCA.issue(pkix.Name{CommonName: "kube-apiserver-etcd-client"}, nil, clientOnly, 365*24*time.Hour)
	if err != nil {
		return err
	}

	if err = client.write(c.pki("etcd-client")); err != nil {
		return err
	}

	// the twin's own identity towards the API server, as kubelets and controllers have theirs
	admin, err := info.clusterCA.issue(pkix.Name{CommonName: "talos-twin", Organization: []string{"system:masters"}},
		nil, clientOnly, 365*24*time.Hour)
	if err != nil {
		return err
	}

	if err = admin.write(c.pki("twin-admin")); err != nil {
		return err
	}

	c.api, err = newKubeAPI(info.endpoint, info.clusterCA.crtPEM, admin)

	return err
}

func (c *controlPlane) etcdClient() (*etcdClient, error) {
	return newEtcdClient(c.pki("etcd-ca.crt"), c.pki("etcd-client.crt"), c.pki("etcd-client.key"))
}

// hasEtcdData tells whether the control plane named has etcd data (it founded or joined a cluster): Talos
// then answers a bootstrap with AlreadyExists. Safe on a nil control plane (no etcd given).
func (c *controlPlane) hasEtcdData(name string) bool {
	return c != nil && exists(filepath.Join(c.dir, "etcd", name, "member"))
}

// waitsToJoin: a fresh control plane that is not bootstrapped joins only joinDelay after its config
// came, as Talos' etcd waits for discovery; no running member means nothing to join yet either.
func (c *controlPlane) waitsToJoin(m member) bool {
	if m.bootstrapped || c.hasEtcdData(m.name) {
		return false
	}

	return time.Since(m.configured) < joinDelay || len(c.runningClientURLs()) == 0
}

// startEtcd starts m's member: from its data when it has some, as the first member of a new cluster on
// a bootstrapped node, else after adding it to the running cluster.
func (c *controlPlane) startEtcd(m member) error {
	data := filepath.Join(c.dir, "etcd", m.name)
	base := c.pki("etcd-" + m.name)

	if !exists(base + ".crt") {
		pair, err := c.info.etcdCA.issue(pkix.Name{CommonName: m.name}, []string{m.ip, m.name, "localhost", "127.0.0.1"},
			serverAndClient, 10*365*24*time.Hour)
		if err != nil {
			return err
		}

		if err = pair.write(base); err != nil {
			return err
		}
	}

	initial, state := m.name+"="+m.peerURL(), "new"

	switch {
	case exists(filepath.Join(data, "member")):
		state = "existing" // a restart: etcd reads the cluster from its data, the flags are ignored
	case m.bootstrapped:
		// a new cluster of one member; with another cluster running this is a split brain, as on Talos
		if others := c.runningMembers(); len(others) > 0 {
			c.recordSplit(m, others)
		}
	default:
		// a control plane joining: member add on a running member, then start with the whole list
		client, err := c.etcdClient()
		if err != nil {
			return err
		}

		members, err := client.addMember(c.runningClientURLs(), m.peerURL())
		if err != nil {
			return err
		}

		var list []string

		for _, existing := range members {
			name := existing.Name
			if name == "" {
				name = m.name // the member just added has no name until it starts
			}

			for _, peer := range existing.PeerURLs {
				list = append(list, name+"="+peer)
			}
		}

		initial, state = strings.Join(list, ","), "existing"
	}

	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}

	args := []string{
		"--name", m.name, "--data-dir", data,
		"--listen-client-urls", m.clientURL(), "--advertise-client-urls", m.clientURL(),
		"--listen-peer-urls", m.peerURL(), "--initial-advertise-peer-urls", m.peerURL(),
		"--initial-cluster", initial, "--initial-cluster-state", state,
		"--cert-file", base + ".crt", "--key-file", base + ".key", "--trusted-ca-file", c.pki("etcd-ca.crt"),
		"--client-cert-auth",
		"--peer-cert-file", base + ".crt", "--peer-key-file", base + ".key", "--peer-trusted-ca-file", c.pki("etcd-ca.crt"),
		"--peer-client-cert-auth",
	}

	p, err := startProcess(c.etcdBin, args, filepath.Join(c.dir, "logs", "etcd-"+m.name+".log"))
	if err != nil {
		return err
	}

	c.etcds[m.name] = p
	log.Printf("talos-twin: etcd member %s started on %s (%s cluster)", m.name, m.clientURL(), state)

	return waitFor(10*time.Second, func() error { return checkTCP(net.JoinHostPort(m.ip, "2379")) })
}

// runningMembers names the control planes whose etcd member runs.
func (c *controlPlane) runningMembers() []string {
	var names []string

	for name, p := range c.etcds {
		if p.alive() {
			names = append(names, name)
		}
	}

	sort.Strings(names)

	return names
}

func (c *controlPlane) runningClientURLs() []string {
	var urls []string

	for _, n := range c.fleet.all() {
		if p := c.etcds[hostnameOfLocked(n)]; p != nil && p.alive() {
			urls = append(urls, "https://"+net.JoinHostPort(n.ip, "2379"))
		}
	}

	return urls
}

// leave removes a member from etcd (a control plane reset or gone), stops it and wipes its data.
// etcd refuses a removal that would leave the cluster unhealthy (a member that joined seconds ago):
// the member then keeps running and the next round tries again.
func (c *controlPlane) leave(name string, p *process) {
	client, err := c.etcdClient()
	if err == nil {
		err = client.removeMember(c.runningClientURLs(), name)
	}

	if err != nil {
		log.Printf("talos-twin: etcd member %s: leave: %v (retrying)", name, err)

		return
	}

	p.stop()
	delete(c.etcds, name)

	if err := os.RemoveAll(filepath.Join(c.dir, "etcd", name)); err != nil {
		log.Printf("talos-twin: etcd member %s: %v", name, err)
	}

	log.Printf("talos-twin: etcd member %s left the cluster", name)
}

func (c *controlPlane) startAPIServer(cps []member) error {
	info := c.info
	base := c.pki("apiserver")

	if !exists(base + ".crt") {
		names := []string{info.endpointHost, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc." + info.dnsDomain, "localhost", "127.0.0.1"}
		if ip := firstServiceIP(info.serviceCIDR); ip != "" {
			names = append(names, ip)
		}

		for _, m := range cps {
			names = append(names, m.ip)
		}

		pair, err := info.clusterCA.issue(pkix.Name{CommonName: "kube-apiserver"}, append(names, info.certSANs...),
			serverOnly, 365*24*time.Hour)
		if err != nil {
			return err
		}

		if err = pair.write(base); err != nil {
			return err
		}
	}

	// every member, running or not yet: the API server balances over those that answer
	servers := make([]string, 0, len(cps))
	for _, m := range cps {
		servers = append(servers, m.clientURL())
	}

	endpoint, err := url.Parse(info.endpoint)
	if err != nil {
		return err
	}

	port := endpoint.Port()
	if port == "" {
		port = "443"
	}

	args := []string{
		"--bind-address", info.endpointHost, "--advertise-address", info.endpointHost, "--secure-port", port,
		"--etcd-servers", strings.Join(servers, ","), "--etcd-cafile", c.pki("etcd-ca.crt"),
		"--etcd-certfile", c.pki("etcd-client.crt"), "--etcd-keyfile", c.pki("etcd-client.key"),
		"--client-ca-file", c.pki("ca.crt"), "--tls-cert-file", base + ".crt", "--tls-private-key-file", base + ".key",
		"--service-account-key-file", c.pki("service-account.key"),
		"--service-account-signing-key-file", c.pki("service-account.key"),
		"--service-account-issuer", info.endpoint, "--api-audiences", info.endpoint,
		"--service-cluster-ip-range", info.serviceCIDR,
		// as Talos runs it: RBAC and the node authorizer, privileged pods allowed (Cilium needs them)
		"--authorization-mode", "Node,RBAC", "--allow-privileged=true", "--profiling=false",
		"--cert-dir", filepath.Join(c.dir, "apiserver"),
		// the lab's endpoint is a loopback address, which an Endpoints object refuses: no endpoint reconciler
		"--endpoint-reconciler-type", "none",
		// No admission webhooks (docs/lab.md, "Admission webhooks"): with no pod network the API server can
		// never reach a Service-backed webhook (cert-manager's and External Secrets' charts register them with
		// failurePolicy Fail, and their servers do not run), so every create of their objects would be refused.
		// It dials the Service's cluster IP, which nothing serves here; routing to endpoints instead would need
		// an Endpoints address on loopback, which validation refuses. Objects are still validated by their CRD
		// schemas (and ValidatingAdmissionPolicy, in-process, stays on).
		"--disable-admission-plugins", "MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
	}

	p, err := startProcess(c.apiserverBin, args, filepath.Join(c.dir, "logs", "kube-apiserver.log"))
	if err != nil {
		return err
	}

	c.apiserver = p
	log.Printf("talos-twin: kube-apiserver started on %s (etcd %s)", info.endpoint, strings.Join(servers, ","))

	return nil
}

// members lists the etcd members as the node's own member reports them (Talos asks its local etcd):
// after a split brain each cluster lists only its own members.
func (c *controlPlane) members(ip string) ([]etcdMember, error) {
	client, err := c.etcdClient()
	if err != nil {
		return nil, err
	}

	return client.listMembers([]string{"https://" + net.JoinHostPort(ip, "2379")})
}

// etcdRunning tells whether the node's etcd member runs (for the service list).
func (c *controlPlane) etcdRunning(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()

	p := c.etcds[name]

	return p != nil && p.alive()
}

func (c *controlPlane) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.stopLocked()
}

func (c *controlPlane) stopLocked() {
	c.forwards.close()
	c.loop.stop()

	if c.apiserver != nil {
		c.apiserver.stop()
		c.apiserver = nil
	}

	for name, p := range c.etcds {
		p.stop()
		delete(c.etcds, name)
	}

	c.info, c.api = nil, nil
	c.nodes = nodeRegistry{}
}

// apiBackend is host:port of the API server (the cluster endpoint); "" without a cluster.
func (c *controlPlane) apiBackend() string {
	endpoint, err := url.Parse(c.info.endpoint)
	if err != nil {
		return ""
	}

	port := endpoint.Port()
	if port == "" {
		port = "443"
	}

	return net.JoinHostPort(endpoint.Hostname(), port)
}

func controlPlaneIPs(cps []member) []string {
	ips := make([]string, 0, len(cps))
	for _, m := range cps {
		ips = append(ips, m.ip)
	}

	return ips
}

func firstServiceIP(cidrs string) string {
	_, network, err := net.ParseCIDR(strings.Split(cidrs, ",")[0])
	if err != nil {
		return ""
	}

	ip := network.IP.To4()
	if ip == nil {
		return ""
	}

	next := make(net.IP, len(ip))
	copy(next, ip)
	next[3]++

	return next.String()
}

// hostnameOf is the node's name in Kubernetes and etcd: the HostnameConfig document's hostname, then
// machine.network.hostname, then the twin's name for the node. Callers hold n.mu.
func hostnameOf(n *node) string {
	if n.active != nil {
		if h := n.active.NetworkHostnameConfig(); h != nil && h.Hostname() != "" {
			return h.Hostname()
		}
	}

	return n.name
}

func hostnameOfLocked(n *node) string {
	n.mu.Lock()
	defer n.mu.Unlock()

	return hostnameOf(n)
}
