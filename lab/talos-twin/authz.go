package main

import (
	"context"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

var errNotAuthorized = status.Error(codes.PermissionDenied, "not authorized")

// Methods a reader may call (everything that only reads); operator adds the disruptive-but-safe ones;
// anything else needs os:admin, as Talos' own rules do. ApplyConfiguration is also open to readers:
// in maintenance mode every caller is a reader and may apply; the handler refuses readers otherwise.
var (
	readerMethods = setOf("Version", "ServiceList", "ServiceInfo", "EtcdMemberList", "EtcdStatus", "EtcdAlarmList",
		"Events", "Hostname", "Containers", "CPUInfo", "DiskStats", "DiskUsage", "Dmesg", "ImageList", "List",
		"LoadAvg", "Logs", "LogsContainers", "Memory", "Mounts", "NetworkDeviceStats", "Netstat", "Processes",
		"Stats", "SystemStat", "ApplyConfiguration")
	operatorMethods = setOf("Reboot", "Restart", "Shutdown", "ServiceStart", "ServiceStop", "ServiceRestart",
		"EtcdAlarmDisarm", "EtcdDefragment", "EtcdSnapshot", "ImagePull", "PacketCapture")
)

func setOf(names ...string) map[string]bool {
	out := make(map[string]bool, len(names))
	for _, name := range names {
		out[name] = true
	}

	return out
}

// allowedRoles for a full gRPC method name such as /machine.MachineService/Version.
func allowedRoles(fullMethod string) role.Set {
	method := fullMethod[strings.LastIndex(fullMethod, "/")+1:]

	switch {
	case readerMethods[method]:
		return role.MakeSet(role.Admin, role.Operator, role.Reader)
	case operatorMethods[method]:
		return role.MakeSet(role.Admin, role.Operator)
	default:
		return role.MakeSet(role.Admin)
	}
}

// rolesOf reads the caller's roles: the Organization of its verified client certificate on a configured
// node; the reader role for everyone in maintenance mode (no client certificate is asked for).
func rolesOf(ctx context.Context, maintenance bool) role.Set {
	if maintenance {
		return role.MakeSet(role.Reader)
	}

	p, ok := peer.FromContext(ctx)
	if !ok {
		return role.MakeSet()
	}

	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return role.MakeSet()
	}

	roles, _ := role.Parse(info.State.VerifiedChains[0][0].Subject.Organization)

	return roles
}

type rolesKey struct{}

func withRoles(ctx context.Context, roles role.Set) context.Context {
	return context.WithValue(ctx, rolesKey{}, roles)
}

func callerRoles(ctx context.Context) role.Set {
	roles, _ := ctx.Value(rolesKey{}).(role.Set)

	return roles
}
