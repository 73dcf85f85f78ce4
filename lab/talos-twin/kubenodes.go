package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/version"
)

// kubeAPI is a small JSON client of the real kube-apiserver, with a system:masters certificate the twin
// issued from the cluster CA: what the kubelets' registration needs, without client-go.
type kubeAPI struct {
	base string
	http *http.Client
}

func newKubeAPI(endpoint string, caPEM []byte, identity leaf) (*kubeAPI, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("cluster CA: no certificate")
	}

	pair, err := tls.X509KeyPair(identity.crt, identity.key)
	if err != nil {
		return nil, err
	}

	transport := &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair},
	}}

	return &kubeAPI{base: strings.TrimSuffix(endpoint, "/"), http: &http.Client{Transport: transport, Timeout: 5 * time.Second}}, nil
}

// do sends a request; the answer's status code, and its JSON decoded into out when given.
func (k *kubeAPI) do(method, path, contentType string, body, out any) (int, error) {
	var reader io.Reader

	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}

		reader = bytes.NewReader(data)
	}

	req, err := http.NewRequest(method, k.base+path, reader) //nolint:noctx
	if err != nil {
		return 0, err
	}

	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}

	resp, err := k.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close() //nolint:errcheck

	payload, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}

	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotFound {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, payload)
	}

	if out != nil && resp.StatusCode < 300 {
		return resp.StatusCode, json.Unmarshal(payload, out)
	}

	return resp.StatusCode, nil
}

func (k *kubeAPI) ready() error {
	if k == nil {
		return fmt.Errorf("no API server yet")
	}

	code, err := k.do(http.MethodGet, "/readyz", "", nil, nil)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("readyz: %d", code)
	}

	return err
}

// cniInstalled stands for the kubelet finding a CNI configuration on the host: in the twin, Cilium's
// DaemonSet in kube-system exists. Pods never run here, so its rollout is not waited for.
func (k *kubeAPI) cniInstalled() (bool, error) {
	code, err := k.do(http.MethodGet, "/apis/apps/v1/namespaces/kube-system/daemonsets/cilium", "", nil, nil)

	return code == http.StatusOK, err
}

// pullableTag is what the twin takes for a kubelet image it can pull: a version tag.
var pullableTag = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)

// nodeRegistry registers one Node per configured node, the way each node's kubelet does, and keeps its
// labels, addresses and Ready condition up to date; last holds what was sent, so nothing is re-sent.
type nodeRegistry struct {
	last map[string]string
	// cniSince: when the Cilium DaemonSet was first seen; registered: when each Node was first sent. A node
	// is Ready timing.cniReady after the later of the two (its agent's image pulled and started).
	cniSince   time.Time
	registered map[string]time.Time
}

// readyNow tells whether the node's CNI is up: the DaemonSet exists and its agent had time to start there.
func (r *nodeRegistry) readyNow(name string, cni bool, now time.Time) bool {
	if _, ok := r.registered[name]; !ok {
		r.registered[name] = now
	}

	if !cni {
		r.cniSince = time.Time{}

		return false
	}

	if r.cniSince.IsZero() {
		r.cniSince = now
	}

	since := r.cniSince
	if r.registered[name].After(since) {
		since = r.registered[name]
	}

	return now.Sub(since) >= timing.cniReady
}

// desired is the Node of a configured node: labels and taints from its config, addresses, readiness.
func desired(n *node, ready bool) (name string, metadata, spec, status map[string]any) {
	n.mu.Lock()
	defer n.mu.Unlock()

	cfg := n.active
	name = hostnameOf(n)
	labels := map[string]any{
		"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
	}

	for k, v := range cfg.Machine().NodeLabels() {
		labels[k] = v
	}

	taints := []any{}

	if cfg.Machine().Type().IsControlPlane() {
		labels["node-role.kubernetes.io/control-plane"] = ""

		if !cfg.Cluster().ScheduleOnControlPlanes() {
			taints = append(taints, map[string]any{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
		}
	}

	kubelet := cfg.Machine().Kubelet().Image()
	if i := strings.LastIndex(kubelet, ":"); i >= 0 {
		kubelet = kubelet[i+1:]
	}

	condition := map[string]any{
		"type": "Ready", "status": "False", "reason": "KubeletNotReady",
		"message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady " +
			"message:Network plugin returns error: cni plugin not initialized",
	}
	if ready {
		condition = map[string]any{"type": "Ready", "status": "True", "reason": "KubeletReady",
			"message": "kubelet is posting ready status"}
	}

	// a kubelet image the twin cannot pull (its tag is no version) never runs: the Node stops being
	// updated, which the node controller shows as Unknown; the lab's stand-in for a node that does not
	// come back healthy after a config change
	if !pullableTag.MatchString(kubelet) {
		condition = map[string]any{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
			"message": "Kubelet stopped posting node status (image " + cfg.Machine().Kubelet().Image() +
				" cannot be pulled)"}
	}

	installed := version.Tag
	if n.state.Version != "" {
		installed = n.state.Version
	}

	metadata = map[string]any{"name": name, "labels": labels}
	spec = map[string]any{"taints": taints}

	// a kubelet registers its Node with the provider ID of its KubeletConfiguration (Talos: extraConfig)
	if id, ok := cfg.Machine().Kubelet().ExtraConfig()["providerID"].(string); ok && id != "" {
		spec["providerID"] = id
	}
	status = map[string]any{
		"conditions": []any{condition},
		"addresses": []any{
			map[string]any{"type": "InternalIP", "address": n.ip},
			map[string]any{"type": "Hostname", "address": name},
		},
		"nodeInfo": map[string]any{
			"kubeletVersion": kubelet, "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
			"osImage": "Talos (" + installed + ")", "containerRuntimeVersion": "containerd://2.1.5",
			"kernelVersion": "6.18.0-talos", "machineID": "", "systemUUID": "", "bootID": "",
		},
	}

	return name, metadata, spec, status
}

func (r *nodeRegistry) reconcile(api *kubeAPI, configured []*node) error {
	if r.last == nil {
		r.last, r.registered = map[string]string{}, map[string]time.Time{}
	}

	cni, err := api.cniInstalled()
	if err != nil {
		return err
	}

	now := time.Now()

	for _, n := range configured {
		name, metadata, spec, status := desired(n, r.readyNow(hostnameOfLocked(n), cni, now))
		want, err := json.Marshal(map[string]any{"metadata": metadata, "spec": spec, "status": status})
		if err != nil {
			return err
		}

		if r.last[name] == string(want) {
			continue
		}

		if err := r.send(api, name, metadata, spec, status); err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}

		r.last[name] = string(want)
	}

	return nil
}

func (r *nodeRegistry) send(api *kubeAPI, name string, metadata, spec, status map[string]any) error {
	path := "/api/v1/nodes/" + name
	now := time.Now().UTC().Format(time.RFC3339)

	for _, c := range status["conditions"].([]any) {
		c.(map[string]any)["lastHeartbeatTime"], c.(map[string]any)["lastTransitionTime"] = now, now
	}

	code, err := api.do(http.MethodGet, path, "", nil, nil)
	if err != nil {
		return err
	}

	if code == http.StatusNotFound {
		node := map[string]any{"apiVersion": "v1", "kind": "Node", "metadata": metadata, "spec": spec}
		if _, err = api.do(http.MethodPost, "/api/v1/nodes", "application/json", node, nil); err != nil {
			return err
		}
	} else if _, err = api.do(http.MethodPatch, path, "application/merge-patch+json",
		map[string]any{"metadata": map[string]any{"labels": metadata["labels"]}, "spec": withoutProviderID(spec)},
		nil); err != nil {
		return err
	}

	_, err = api.do(http.MethodPatch, path+"/status", "application/merge-patch+json", map[string]any{"status": status}, nil)

	return err
}

// withoutProviderID is a Node spec update as a kubelet sends it: the provider ID is set once, at registration
// (the API server refuses to change it afterwards).
func withoutProviderID(spec map[string]any) map[string]any {
	update := map[string]any{}

	for k, v := range spec {
		if k != "providerID" {
			update[k] = v
		}
	}

	return update
}
