package main

import (
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The rest of the control loop, started next to the kube-apiserver once it is ready: the real
// kube-controller-manager and kube-scheduler (same Kubernetes release), and KWOK in the kubelets' place
// for pods. Each is optional: without its binary the twin runs without it and says so once.
var (
	controllerManagerBin = flag.String("kube-controller-manager", os.Getenv("TURNKEY_KUBE_CONTROLLER_MANAGER"),
		"kube-controller-manager binary run next to the API server (default $TURNKEY_KUBE_CONTROLLER_MANAGER)")
	schedulerBin = flag.String("kube-scheduler", os.Getenv("TURNKEY_KUBE_SCHEDULER"),
		"kube-scheduler binary run next to the API server (default $TURNKEY_KUBE_SCHEDULER)")
	kwokBin = flag.String("kwok", os.Getenv("TURNKEY_KWOK"),
		"kwok binary that plays the kubelets for pods (default $TURNKEY_KWOK)")
)

// Ports of the components' own HTTPS (health, metrics) on the cluster endpoint's address, as Talos
// serves them on each control plane; the twin runs one of each per cluster.
const (
	controllerManagerPort = "10257"
	schedulerPort         = "10259"
	kwokPort              = "10247"
	// restartPause keeps a component that exits at once from being restarted every round.
	restartPause = 5 * time.Second
	// leaseRenew and leaseDuration are a kubelet's defaults (nodeLeaseDurationSeconds 40, renewed every
	// quarter of it): the node lifecycle controller marks a node Unknown when its lease stops moving.
	leaseRenew    = 10 * time.Second
	leaseDuration = 40
)

// loopComponent is one long-running child of the control loop.
type loopComponent struct {
	name, binary string
	proc         *process
	started      time.Time
	warned       bool
}

// controlLoop runs the controller manager, the scheduler and KWOK for the cluster, renews every running
// kubelet's node Lease (the twin owns the Nodes: KWOK plays no node stage and holds no lease) and keeps
// the kubelet's gate on pods (podgate.go).
type controlLoop struct {
	components []*loopComponent
	leases     map[string]time.Time // node name -> last renewal
	sized      map[string]bool      // node UIDs whose capacity is reported
	gate       podGate
}

func (l *controlLoop) init() {
	if l.components != nil {
		return
	}

	l.components = []*loopComponent{
		{name: "kube-controller-manager", binary: *controllerManagerBin},
		{name: "kube-scheduler", binary: *schedulerBin},
		{name: "kwok", binary: *kwokBin},
	}
	l.leases, l.sized = map[string]time.Time{}, map[string]bool{}
}

// reconcile runs once the API server answers /readyz: node leases, the pod gate, then the components.
func (l *controlLoop) reconcile(c *controlPlane, configured []*node) error {
	l.init()

	if err := l.renewLeases(c.api, configured); err != nil {
		return fmt.Errorf("node leases: %w", err)
	}

	if err := l.gate.reconcile(c.api, configured); err != nil {
		return fmt.Errorf("pod gate: %w", err)
	}

	for _, component := range l.components {
		if component.binary == "" {
			if !component.warned {
				log.Printf("talos-twin: no %s binary given: it does not run in this cluster", component.name)
				component.warned = true
			}

			continue
		}

		if component.proc != nil && component.proc.alive() {
			continue
		}

		if time.Since(component.started) < restartPause {
			continue
		}

		if component.proc != nil {
			log.Printf("talos-twin: %s exited; starting it again (log: %s)", component.name, c.loopLog(component.name))
		}

		args, err := l.args(c, component.name, configured)
		if err != nil {
			return fmt.Errorf("%s: %w", component.name, err)
		}

		p, err := startProcess(component.binary, args, c.loopLog(component.name))
		if err != nil {
			return fmt.Errorf("%s: %w", component.name, err)
		}

		component.proc, component.started = p, time.Now()
		log.Printf("talos-twin: %s started for cluster %s", component.name, c.info.name)
	}

	return nil
}

func (c *controlPlane) loopLog(name string) string {
	return filepath.Join(c.dir, "logs", name+".log")
}

// args writes what the component needs (client certificate and kubeconfig issued from the cluster CA,
// a serving certificate, KWOK's stages) and returns its command line.
func (l *controlLoop) args(c *controlPlane, name string, configured []*node) ([]string, error) {
	info := c.info

	identity := map[string]pkix.Name{
		// the bootstrap RBAC of the API server binds these users to their roles, as for Talos' own
		"kube-controller-manager": {CommonName: "system:kube-controller-manager"},
		"kube-scheduler":          {CommonName: "system:kube-scheduler"},
		// KWOK plays every node's kubelet (pod status, deletion, events): one identity for all of them,
		// which the node authorizer's per-node rules cannot express
		"kwok": {CommonName: "kwok-controller", Organization: []string{"system:masters"}},
	}[name]

	kubeconfig, err := c.writeKubeconfig(name, identity)
	if err != nil {
		return nil, err
	}

	serving := c.pki(name + "-serving")
	if !exists(serving + ".crt") {
		pair, err := info.clusterCA.issue(pkix.Name{CommonName: name}, []string{info.endpointHost, "localhost"},
			serverOnly, 365*24*time.Hour)
		if err != nil {
			return nil, err
		}

		if err = pair.write(serving); err != nil {
			return nil, err
		}
	}

	podCIDR := podSubnets(configured)
	// the API server runs without a front proxy, so extension-apiserver-authentication has no request-header
	// CA: without the lookup the components do not retry reading it every few seconds
	serve := []string{
		"--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
		"--authentication-skip-lookup", "--bind-address", info.endpointHost,
		"--tls-cert-file", serving + ".crt", "--tls-private-key-file", serving + ".key",
	}

	switch name {
	case "kube-controller-manager":
		return append(serve, "--secure-port", controllerManagerPort,
			// as Talos runs it: every controller plus the token cleaner, one service account per controller
			// (their tokens come from the API server's TokenRequest, signed with the shared key), node CIDRs
			"--controllers", "*,tokencleaner", "--use-service-account-credentials",
			"--service-account-private-key-file", c.pki("service-account.key"), "--root-ca-file", c.pki("ca.crt"),
			"--allocate-node-cidrs", "--cluster-cidr", podCIDR, "--service-cluster-ip-range", info.serviceCIDR,
			"--configure-cloud-routes=false", "--profiling=false",
			// its own folder, not the host's /usr/libexec/kubernetes/kubelet-plugins
			"--flex-volume-plugin-dir", filepath.Join(c.dir, "kube-controller-manager", "volume-plugins"),
			// one controller manager per cluster: no election to wait for after a restart
			"--leader-elect=false",
		), nil
	case "kube-scheduler":
		return append(serve, "--secure-port", schedulerPort, "--profiling=false", "--leader-elect=false"), nil
	default: // kwok
		stages := filepath.Join(c.dir, "kwok", "stages.yaml")
		if err := writePrivate(stages, []byte(kwokStages)); err != nil {
			return nil, err
		}

		return []string{
			"--kubeconfig", kubeconfig, "--config", stages,
			// every Node is the twin's; KWOK plays no node stage (the one it has never matches) and holds
			// no lease, so node status and leases stay the twin's
			"--manage-all-nodes", "--node-lease-duration-seconds", "0",
			"--cidr", strings.Split(podCIDR, ",")[0],
			"--server-address", info.endpointHost + ":" + kwokPort,
			"--tls-cert-file", serving + ".crt", "--tls-private-key-file", serving + ".key",
		}, nil
	}
}

// writeKubeconfig issues a client certificate for identity and writes <pki>/<name>.kubeconfig (0600).
func (c *controlPlane) writeKubeconfig(name string, identity pkix.Name) (string, error) {
	path := c.pki(name + ".kubeconfig")
	if exists(path) {
		return path, nil
	}

	client, err := c.info.clusterCA.issue(identity, nil, clientOnly, 365*24*time.Hour)
	if err != nil {
		return "", err
	}

	encode := base64.StdEncoding.EncodeToString
	config := map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": name,
		"clusters": []any{map[string]any{"name": c.info.name, "cluster": map[string]any{
			"server": c.info.endpoint, "certificate-authority-data": encode(c.info.clusterCA.crtPEM),
		}}},
		"users": []any{map[string]any{"name": name, "user": map[string]any{
			"client-certificate-data": encode(client.crt), "client-key-data": encode(client.key),
		}}},
		"contexts": []any{map[string]any{"name": name, "context": map[string]any{"cluster": c.info.name, "user": name}}},
	}

	data, err := json.MarshalIndent(config, "", "  ") // JSON is YAML: every client reads it
	if err != nil {
		return "", err
	}

	return path, writePrivate(path, data)
}

// podSubnets is the cluster's pod network (cluster.network.podSubnets), Talos' default when unset.
func podSubnets(configured []*node) string {
	for _, n := range configured {
		n.mu.Lock()
		cidrs := n.active.Cluster().Network().PodCIDRs()
		n.mu.Unlock()

		if len(cidrs) > 0 {
			return strings.Join(cidrs, ",")
		}
	}

	return "10.244.0.0/16"
}

// renewLeases keeps kube-node-lease/<node> moving for every node whose kubelet runs, every leaseRenew,
// as the kubelet does, and reports the node's capacity once per Node; a node whose kubelet cannot run keeps a stale lease (the controller manager's
// node lifecycle controller then marks it Unknown and taints it, as for a real dead kubelet).
func (l *controlLoop) renewLeases(api *kubeAPI, configured []*node) error {
	for _, n := range configured {
		name, runs := kubeletRuns(n)
		if !runs || time.Since(l.leases[name]) < leaseRenew {
			continue
		}

		var node struct {
			Metadata struct {
				UID string `json:"uid"`
			} `json:"metadata"`
		}

		code, err := api.do(http.MethodGet, "/api/v1/nodes/"+name, "", nil, &node)
		if err != nil || code == http.StatusNotFound {
			continue // not registered yet: the node registry does that first
		}

		if !l.sized[node.Metadata.UID] {
			if _, err = api.do(http.MethodPatch, "/api/v1/nodes/"+name+"/status", "application/merge-patch+json",
				map[string]any{"status": nodeCapacity}, nil); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}

			l.sized[node.Metadata.UID] = true
		}

		now := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z07:00")
		lease := map[string]any{
			"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
			"metadata": map[string]any{"name": name, "namespace": "kube-node-lease", "ownerReferences": []any{
				map[string]any{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node.Metadata.UID},
			}},
			"spec": map[string]any{"holderIdentity": name, "leaseDurationSeconds": leaseDuration, "renewTime": now},
		}
		path := "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + name

		code, err = api.do(http.MethodPatch, path, "application/merge-patch+json",
			map[string]any{"spec": map[string]any{"holderIdentity": name, "renewTime": now}}, nil)
		if err == nil && code == http.StatusNotFound {
			_, err = api.do(http.MethodPost, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
				"application/json", lease, nil)
		}

		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}

		l.leases[name] = time.Now()
	}

	return nil
}

// nodeCapacity is what every running kubelet reports (the scheduler fits pods into allocatable; without
// it no pod fits): the lab's nodes are all of one size, Talos' kubelet reserves for the system.
var nodeCapacity = map[string]any{
	"capacity": map[string]string{"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi",
		"hugepages-1Gi": "0", "hugepages-2Mi": "0"},
	"allocatable": map[string]string{"cpu": "3950m", "memory": "7808Mi", "pods": "110", "ephemeral-storage": "19Gi",
		"hugepages-1Gi": "0", "hugepages-2Mi": "0"},
}

// kubeletRuns: the node's name and whether its kubelet runs (its image can be pulled; see desired()).
func kubeletRuns(n *node) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()

	image := n.active.Machine().Kubelet().Image()
	if i := strings.LastIndex(image, ":"); i >= 0 {
		image = image[i+1:]
	}

	return hostnameOf(n), pullableTag.MatchString(image)
}

func (l *controlLoop) stop() {
	for _, component := range l.components {
		if component.proc != nil {
			component.proc.stop()
		}
	}

	*l = controlLoop{}
}
