package main

import (
	"bytes"
	"context"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The endpoint a client dialled (-e) answers for the nodes it names (-n), as apid does: "nodes" metadata
// means one-to-many (each node's reply or error lands in a message with its Metadata), "node" means a
// plain one-to-one call, none means the endpoint itself. Nodes are served in-process.

type targetKey struct{}

func targetOf(ctx context.Context) *node {
	n, _ := ctx.Value(targetKey{}).(*node)

	return n
}

func (a *machineAPI) authorize(ctx context.Context, endpoint *node, fullMethod string) (context.Context, error) {
	roles := rolesOf(ctx, endpoint.modeName() == "maintenance")
	if !allowedRoles(fullMethod).IncludesAny(roles) {
		return nil, errNotAuthorized
	}

	return withRoles(ctx, roles), nil
}

// resolve finds the node a call names; from a configured endpoint it must trust the target's API
// certificate as apid does, so a node in maintenance mode or of another cluster is unreachable.
func (a *machineAPI) resolve(endpoint *node, target string) (*node, error) {
	n := a.fleet.lookup(target)
	if n == nil {
		return nil, status.Errorf(codes.Unavailable, "connection error: talos-twin has no node %q", target)
	}

	if n != endpoint && endpoint.caCert() != nil && !bytes.Equal(endpoint.caCert(), n.caCert()) {
		return nil, status.Error(codes.Unavailable, `connection error: desc = "transport: authentication handshake failed: `+
			`tls: failed to verify certificate: x509: certificate signed by unknown authority"`)
	}

	return n, nil
}

func (a *machineAPI) unaryInterceptor(endpoint *node) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authorize(ctx, endpoint, info.FullMethod)
		if err != nil {
			return nil, err
		}

		md, _ := metadata.FromIncomingContext(ctx)

		if targets := md.Get("nodes"); len(targets) > 0 {
			return a.oneToMany(ctx, endpoint, targets, req, info, handler)
		}

		target := endpoint
		if single := md.Get("node"); len(single) > 0 {
			if target, err = a.resolve(endpoint, single[0]); err != nil {
				return nil, err
			}
		}

		resp, err := handler(context.WithValue(ctx, targetKey{}, target), req)
		if err != nil {
			return nil, err
		}

		stampHostname(resp, target.ip)

		return resp, nil
	}
}

func (a *machineAPI) streamInterceptor(endpoint *node) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authorize(ss.Context(), endpoint, info.FullMethod)
		if err != nil {
			return err
		}

		target := endpoint

		md, _ := metadata.FromIncomingContext(ctx)
		if names := append(md.Get("nodes"), md.Get("node")...); len(names) > 0 {
			if len(names) > 1 {
				return status.Error(codes.Unimplemented, "talos-twin: streaming calls to several nodes are not supported")
			}

			if target, err = a.resolve(endpoint, names[0]); err != nil {
				return err
			}
		}

		return handler(srv, &targetStream{ServerStream: ss, ctx: context.WithValue(ctx, targetKey{}, target)})
	}
}

type targetStream struct {
	grpc.ServerStream

	ctx context.Context //nolint:containedctx
}

func (s *targetStream) Context() context.Context { return s.ctx }

func (a *machineAPI) oneToMany(ctx context.Context, endpoint *node, targets []string, req any, info *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler,
) (any, error) {
	out, err := newResponse(info.FullMethod)
	if err != nil {
		return nil, err
	}

	msgs := out.ProtoReflect()
	listField := msgs.Descriptor().Fields().ByName("messages")
	if listField == nil {
		return nil, status.Errorf(codes.Internal, "talos-twin: %s has no messages field", info.FullMethod)
	}

	list := msgs.Mutable(listField).List()

	for _, name := range targets {
		target, err := a.resolve(endpoint, name)

		var resp any
		if err == nil {
			resp, err = handler(context.WithValue(ctx, targetKey{}, target), req)
		}

		if err != nil {
			elem := list.NewElement()
			setMetadata(elem.Message(), &common.Metadata{Hostname: name, Error: err.Error(), Status: status.Convert(err).Proto()})
			list.Append(elem)

			continue
		}

		stampHostname(resp, name)

		part := resp.(proto.Message).ProtoReflect()
		partList := part.Get(part.Descriptor().Fields().ByName("messages")).List()

		for i := range partList.Len() {
			list.Append(partList.Get(i))
		}
	}

	return out, nil
}

// newResponse makes an empty reply message for a method, found through the registered descriptors.
func newResponse(fullMethod string) (proto.Message, error) {
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")

	desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return nil, internalError(err)
	}

	svc, ok := desc.(protoreflect.ServiceDescriptor)
	if !ok || svc.Methods().ByName(protoreflect.Name(method)) == nil {
		return nil, status.Errorf(codes.Internal, "talos-twin: unknown method %s", fullMethod)
	}

	mt, err := protoregistry.GlobalTypes.FindMessageByName(svc.Methods().ByName(protoreflect.Name(method)).Output().FullName())
	if err != nil {
		return nil, internalError(err)
	}

	return mt.New().Interface(), nil
}

// stampHostname sets Metadata.Hostname on every message of a reply, as apid's proxy does.
func stampHostname(resp any, hostname string) {
	msg, ok := resp.(proto.Message)
	if !ok {
		return
	}

	r := msg.ProtoReflect()

	listField := r.Descriptor().Fields().ByName("messages")
	if listField == nil || !listField.IsList() {
		return
	}

	list := r.Get(listField).List()
	for i := range list.Len() {
		m := list.Get(i).Message()

		mdField := m.Descriptor().Fields().ByName("metadata")
		if mdField == nil {
			continue
		}

		md, ok := m.Mutable(mdField).Message().Interface().(*common.Metadata)
		if ok && md.GetHostname() == "" {
			md.Hostname = hostname
		}
	}
}

func setMetadata(m protoreflect.Message, md *common.Metadata) {
	if f := m.Descriptor().Fields().ByName("metadata"); f != nil {
		m.Set(f, protoreflect.ValueOfMessage(md.ProtoReflect()))
	}
}
