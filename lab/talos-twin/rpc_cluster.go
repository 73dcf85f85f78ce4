package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// controlPlaneConfig is the active config's cluster section for calls only control planes answer.
func controlPlaneConfig(n *node) (*clusterInfo, error) {
	n.mu.Lock()
	defer n.mu.Unlock()

	if n.active == nil {
		return nil, status.Error(codes.FailedPrecondition, "the node is in maintenance mode")
	}

	if !n.active.Machine().Type().IsControlPlane() {
		return nil, status.Error(codes.FailedPrecondition, "kubeconfig is only available on control plane nodes")
	}

	info, err := infoFrom(n.active)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}

	return info, nil
}

// Kubeconfig streams a .tar.gz holding one file, kubeconfig: an admin kubeconfig with a client certificate
// (O=system:masters) issued from the cluster CA for cluster.adminKubeconfig.certLifetime, as Talos does.
func (a *machineAPI) Kubeconfig(_ *emptypb.Empty, stream grpc.ServerStreamingServer[common.Data]) error {
	n := targetOf(stream.Context())

	info, err := controlPlaneConfig(n)
	if err != nil {
		return err
	}

	admin, err := info.clusterCA.issue(pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		nil, clientOnly, info.adminLifetime)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}

	contextName := "admin@" + info.name
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]s
    certificate-authority-data: %[3]s
users:
- name: %[4]s
  user:
    client-certificate-data: %[5]s
    client-key-data: %[6]s
contexts:
- name: %[4]s
  context:
    cluster: %[1]s
    namespace: default
    user: %[4]s
current-context: %[4]s
`, info.name, info.endpoint, base64.StdEncoding.EncodeToString(info.clusterCA.crtPEM), contextName,
		base64.StdEncoding.EncodeToString(admin.crt), base64.StdEncoding.EncodeToString(admin.key))

	var archive bytes.Buffer

	gz := gzip.NewWriter(&archive)
	tw := tar.NewWriter(gz)

	if err = tw.WriteHeader(&tar.Header{Name: "kubeconfig", Mode: 0o600, Size: int64(len(kubeconfig)),
		ModTime: time.Now()}); err == nil {
		_, err = tw.Write([]byte(kubeconfig))
	}

	if err == nil {
		err = tw.Close()
	}

	if err == nil {
		err = gz.Close()
	}

	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}

	return stream.Send(&common.Data{Bytes: archive.Bytes()})
}

// EtcdMemberList answers from the real etcd of the twin's control plane.
func (a *machineAPI) EtcdMemberList(ctx context.Context, _ *machine.EtcdMemberListRequest) (*machine.EtcdMemberListResponse, error) {
	n := targetOf(ctx)

	n.mu.Lock()
	controlPlane := n.active != nil && n.active.Machine().Type().IsControlPlane()
	n.mu.Unlock()

	if !controlPlane || a.fleet.cp == nil || !a.fleet.cp.etcdRunning(hostnameOfLocked(n)) {
		// what Talos answers while its etcd service does not run
		return nil, status.Error(codes.Unavailable, "etcd is not running on this node")
	}

	members, err := a.fleet.cp.members(n.ip)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "etcd: %v", err)
	}

	out := &machine.EtcdMembers{}
	for _, m := range members {
		out.Members = append(out.Members, &machine.EtcdMember{
			Id: m.id(), Hostname: m.Name, PeerUrls: m.PeerURLs, ClientUrls: m.ClientURLs, IsLearner: m.IsLearner,
		})
	}

	return &machine.EtcdMemberListResponse{Messages: []*machine.EtcdMembers{out}}, nil
}

// ServiceList reports Talos' services as a configured node runs them; etcd from the real member's state.
func (a *machineAPI) ServiceList(ctx context.Context, _ *emptypb.Empty) (*machine.ServiceListResponse, error) {
	n := targetOf(ctx)

	n.mu.Lock()
	configured := n.active != nil
	controlPlane := configured && n.active.Machine().Type().IsControlPlane()
	n.mu.Unlock()

	// talosctl shows each service's last event; Talos always has some
	events := func(state, msg string) *machine.ServiceEvents {
		return &machine.ServiceEvents{Events: []*machine.ServiceEvent{{Msg: msg, State: state, Ts: timestamppb.Now()}}}
	}

	running := func(id string, healthy bool) *machine.ServiceInfo {
		return &machine.ServiceInfo{Id: id, State: "Running", Events: events("Running", "Health check successful"),
			Health: &machine.ServiceHealth{Healthy: healthy, LastChange: timestamppb.Now()}}
	}

	services := []*machine.ServiceInfo{running("apid", true), running("machined", true)}

	if configured {
		services = append(services, running("containerd", true), running("cri", true), running("kubelet", true))

		if controlPlane {
			etcd := &machine.ServiceInfo{Id: "etcd", State: "Preparing", Events: events("Preparing",
				"Running pre state"), Health: &machine.ServiceHealth{Unknown: true}}
			if a.fleet.cp != nil && a.fleet.cp.etcdRunning(hostnameOfLocked(n)) {
				etcd = running("etcd", true)
			}

			services = append(services, etcd, running("trustd", true))
		}
	}

	return &machine.ServiceListResponse{Messages: []*machine.ServiceList{{Services: services}}}, nil
}
