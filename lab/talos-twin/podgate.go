package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// The kubelet's gate, which KWOK does not keep: a kubelet starts a pod's containers only once every
// Secret and ConfigMap the pod references (volumes, env valueFrom, envFrom; not optional) exists with the
// keys asked for, and only once the node's network (CNI) is ready for a pod that is not hostNetwork.
// Until then the pod stays Pending with the kubelet's own reasons (ContainerCreating and a FailedMount
// event for a volume, CreateContainerConfigError for env). The twin checks every Pending pod bound to
// one of its nodes each round; once nothing is missing it sets gateAnnotation, and only then do KWOK's
// stages (kwokStages) start the pod. A Secret created later opens the gate on the next round.
const (
	gateAnnotation = "lab.turnkey.cluster/kubelet"
	gateOpen       = "containers-started"
)

// kwokStages: KWOK's pod lifecycle for the lab, after KWOK's own "fast" stages, gated on the annotation,
// plus one node stage that never matches (KWOK needs a node stage to take nodes' pods on; node status
// stays the twin's).
const kwokStages = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-owned-by-talos-twin
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchAnnotations: {lab.turnkey.cluster/kwok-plays-this-node: "never"}
  next: {}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: Exists}
  next:
    delete: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchAnnotations: {` + gateAnnotation + `: ` + gateOpen + `}
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: DoesNotExist}
    - {key: .status.phase, operator: In, values: [Pending]}
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: PodReadyToStartContainers, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Initialized, status: "True", reason: null, message: null, lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "True", reason: null, message: null, lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "True", reason: null, message: null, lastTransitionTime: {{ $now | Quote }}}
      {{ range .spec.readinessGates }}
      - {type: {{ .conditionType | Quote }}, status: "True", lastTransitionTime: {{ $now | Quote }}}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        imageID: ""
        ready: true
        started: true
        restartCount: 0
        state:
          running: {startedAt: {{ $now | Quote }}}
      {{ end }}
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        imageID: ""
        restartCount: 0
        {{ if eq .restartPolicy "Always" }}
        ready: true
        started: true
        state:
          running: {startedAt: {{ $now | Quote }}}
        {{ else }}
        ready: true
        started: false
        state:
          terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}
        {{ end }}
      {{ end }}
      {{ with NodeIPsWith .spec.nodeName }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ with PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchAnnotations: {` + gateAnnotation + `: ` + gateOpen + `}
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: DoesNotExist}
    - {key: .status.phase, operator: In, values: [Running]}
    - {key: '.metadata.ownerReferences.[].kind', operator: In, values: [Job]}
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: ContainersReady, status: "False", reason: PodCompleted, message: null, lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "False", reason: PodCompleted, message: null, lastTransitionTime: {{ $now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        imageID: ""
        ready: false
        started: false
        restartCount: 0
        state:
          terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}
      {{ end }}
      phase: Succeeded
`

// gatePod is the part of a Pod the gate reads.
type gatePod struct {
	Metadata struct {
		Name, Namespace, UID string
		Annotations          map[string]string
		DeletionTimestamp    *string `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		NodeName       string          `json:"nodeName"`
		HostNetwork    bool            `json:"hostNetwork"`
		Volumes        []gateVolume    `json:"volumes"`
		InitContainers []gateContainer `json:"initContainers"`
		Containers     []gateContainer `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

type gateRef struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Optional bool   `json:"optional"`
	Items    []struct {
		Key string `json:"key"`
	} `json:"items"`
}

// secretName: a Secret volume names its Secret in secretName, every other reference in name.
type gateSecretVolume struct {
	gateRef
	SecretName string `json:"secretName"`
}

type gateVolume struct {
	Name      string            `json:"name"`
	Secret    *gateSecretVolume `json:"secret"`
	ConfigMap *gateRef          `json:"configMap"`
	Projected *struct {
		Sources []struct {
			Secret    *gateRef `json:"secret"`
			ConfigMap *gateRef `json:"configMap"`
		} `json:"sources"`
	} `json:"projected"`
}

type gateContainer struct {
	Name, Image string
	Env         []struct {
		ValueFrom *struct {
			SecretKeyRef    *gateRef `json:"secretKeyRef"`
			ConfigMapKeyRef *gateRef `json:"configMapKeyRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	EnvFrom []struct {
		SecretRef    *gateRef `json:"secretRef"`
		ConfigMapRef *gateRef `json:"configMapRef"`
	} `json:"envFrom"`
}

// podGate remembers what it last wrote for each blocked pod, so it writes status and events only on change.
type podGate struct {
	written map[string]string // pod UID -> the blocked status written
}

// blocked is why a pod cannot start yet, in the kubelet's words.
type blocked struct {
	mount      []string          // FailedMount event messages (volumes)
	sandbox    string            // FailedCreatePodSandBox (network not ready)
	containers map[string]string // container -> CreateContainerConfigError message (env)
}

func (b blocked) none() bool { return len(b.mount) == 0 && b.sandbox == "" && len(b.containers) == 0 }

// objects looks Secrets and ConfigMaps up once per round: kind/namespace/name -> keys (nil: missing).
type objects struct {
	api   *kubeAPI
	cache map[string]map[string]bool
	err   error
}

func (o *objects) keys(kind, namespace, name string) map[string]bool {
	id := kind + "/" + namespace + "/" + name
	if found, ok := o.cache[id]; ok {
		return found
	}

	var object struct {
		Data       map[string]any `json:"data"`
		BinaryData map[string]any `json:"binaryData"`
	}

	code, err := o.api.do(http.MethodGet, "/api/v1/namespaces/"+namespace+"/"+kind+"/"+name, "", nil, &object)
	if err != nil {
		o.err = err

		return nil
	}

	var found map[string]bool

	if code != http.StatusNotFound {
		found = map[string]bool{}

		for key := range object.Data {
			found[key] = true
		}

		for key := range object.BinaryData {
			found[key] = true
		}
	}

	o.cache[id] = found

	return found
}

// kubeletKind is how the kubelet names the kind in its messages.
var kubeletKind = map[string]string{"secrets": "secret", "configmaps": "configmap"}

// volumeProblem: the FailedMount message for a volume source, "" when it can be mounted.
func (o *objects) volumeProblem(kind, namespace, volume string, ref *gateRef, name string) string {
	if ref == nil || ref.Optional {
		return ""
	}

	keys := o.keys(kind, namespace, name)
	if keys == nil {
		return fmt.Sprintf("MountVolume.SetUp failed for volume %q : %s %q not found", volume, kubeletKind[kind], name)
	}

	for _, item := range ref.Items {
		if !keys[item.Key] {
			return fmt.Sprintf("MountVolume.SetUp failed for volume %q : %s references non-existent %s key: %s",
				volume, kubeletKind[kind], map[string]string{"secrets": "secret", "configmaps": "config"}[kind], item.Key)
		}
	}

	return ""
}

// envProblem: the CreateContainerConfigError message for an env reference, "" when it resolves.
func (o *objects) envProblem(kind, namespace string, ref *gateRef, needKey bool) string {
	if ref == nil || ref.Optional {
		return ""
	}

	keys := o.keys(kind, namespace, ref.Name)
	if keys == nil {
		return fmt.Sprintf("%s %q not found", kubeletKind[kind], ref.Name)
	}

	if needKey && !keys[ref.Key] {
		return fmt.Sprintf("couldn't find key %s in %s %s/%s", ref.Key,
			map[string]string{"secrets": "Secret", "configmaps": "ConfigMap"}[kind], namespace, ref.Name)
	}

	return ""
}

func (o *objects) check(pod *gatePod, networkReady bool) blocked {
	ns := pod.Metadata.Namespace
	b := blocked{containers: map[string]string{}}

	if !networkReady && !pod.Spec.HostNetwork {
		b.sandbox = "Failed to create pod sandbox: network is not ready: container runtime network not ready: " +
			"NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"
	}

	for _, v := range pod.Spec.Volumes {
		var problems []string

		if v.Secret != nil {
			problems = append(problems, o.volumeProblem("secrets", ns, v.Name, &v.Secret.gateRef, v.Secret.SecretName))
		}

		if v.ConfigMap != nil {
			problems = append(problems, o.volumeProblem("configmaps", ns, v.Name, v.ConfigMap, v.ConfigMap.Name))
		}

		if v.Projected != nil {
			for _, source := range v.Projected.Sources {
				if source.Secret != nil {
					problems = append(problems, o.volumeProblem("secrets", ns, v.Name, source.Secret, source.Secret.Name))
				}

				if source.ConfigMap != nil {
					problems = append(problems, o.volumeProblem("configmaps", ns, v.Name, source.ConfigMap, source.ConfigMap.Name))
				}
			}
		}

		for _, problem := range problems {
			if problem != "" {
				b.mount = append(b.mount, problem)

				break // the kubelet reports the first failing source of a volume
			}
		}
	}

	for _, c := range append(append([]gateContainer{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		var problems []string

		for _, from := range c.EnvFrom {
			problems = append(problems, o.envProblem("secrets", ns, from.SecretRef, false),
				o.envProblem("configmaps", ns, from.ConfigMapRef, false))
		}

		for _, env := range c.Env {
			if env.ValueFrom != nil {
				problems = append(problems, o.envProblem("secrets", ns, env.ValueFrom.SecretKeyRef, true),
					o.envProblem("configmaps", ns, env.ValueFrom.ConfigMapKeyRef, true))
			}
		}

		for _, problem := range problems {
			if problem != "" {
				b.containers[c.Name] = problem

				break
			}
		}
	}

	return b
}

// reconcile opens the gate of every Pending pod on a node whose kubelet runs once nothing is missing,
// and shows the kubelet's status and events for the others.
func (g *podGate) reconcile(api *kubeAPI, configured []*node) error {
	if g.written == nil {
		g.written = map[string]string{}
	}

	running := map[string]bool{}

	for _, n := range configured {
		if name, runs := kubeletRuns(n); runs {
			running[name] = true
		}
	}

	networkReady, err := api.cniInstalled()
	if err != nil {
		return err
	}

	var list struct {
		Items []gatePod `json:"items"`
	}

	query := url.Values{"fieldSelector": {"spec.nodeName!=,status.phase=Pending"}}
	if _, err = api.do(http.MethodGet, "/api/v1/pods?"+query.Encode(), "", nil, &list); err != nil {
		return err
	}

	lookup := &objects{api: api, cache: map[string]map[string]bool{}}
	seen := map[string]bool{}

	for i := range list.Items {
		pod := &list.Items[i]
		seen[pod.Metadata.UID] = true

		if pod.Metadata.DeletionTimestamp != nil || pod.Metadata.Annotations[gateAnnotation] == gateOpen ||
			!running[pod.Spec.NodeName] {
			continue
		}

		why := lookup.check(pod, networkReady)
		if lookup.err != nil {
			return lookup.err
		}

		if why.none() {
			if err := g.open(api, pod); err != nil {
				return err
			}

			delete(g.written, pod.Metadata.UID)

			continue
		}

		if err := g.hold(api, pod, why); err != nil {
			return err
		}
	}

	for uid := range g.written {
		if !seen[uid] {
			delete(g.written, uid)
		}
	}

	return nil
}

func podPath(pod *gatePod) string {
	return "/api/v1/namespaces/" + pod.Metadata.Namespace + "/pods/" + pod.Metadata.Name
}

func (g *podGate) open(api *kubeAPI, pod *gatePod) error {
	_, err := api.do(http.MethodPatch, podPath(pod), "application/merge-patch+json",
		map[string]any{"metadata": map[string]any{"annotations": map[string]string{gateAnnotation: gateOpen}}}, nil)

	return err
}

// hold writes the status a kubelet shows for a pod it cannot start, and its events, once per change.
func (g *podGate) hold(api *kubeAPI, pod *gatePod, why blocked) error {
	fingerprint, err := json.Marshal([]any{why.mount, why.sandbox, why.containers})
	if err != nil {
		return err
	}

	if g.written[pod.Metadata.UID] == string(fingerprint) {
		return nil
	}

	now := time.Now().UTC().Format(time.RFC3339)
	// the sandbox and the volumes come first: no container is created before both are there
	creating := why.sandbox != "" || len(why.mount) > 0
	waiting := func(c gateContainer, initializing bool) map[string]any {
		state := map[string]any{"reason": "ContainerCreating"}

		switch {
		case !creating && why.containers[c.Name] != "":
			state = map[string]any{"reason": "CreateContainerConfigError", "message": why.containers[c.Name]}
		case initializing:
			state = map[string]any{"reason": "PodInitializing"}
		}

		return map[string]any{"name": c.Name, "image": c.Image, "imageID": "", "ready": false, "started": false,
			"restartCount": 0, "state": map[string]any{"waiting": state}}
	}

	containers, inits := []any{}, []any{}
	for _, c := range pod.Spec.InitContainers {
		inits = append(inits, waiting(c, false))
	}

	for _, c := range pod.Spec.Containers {
		containers = append(containers, waiting(c, len(pod.Spec.InitContainers) > 0))
	}

	unready := make([]string, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		unready = append(unready, c.Name)
	}

	message := "containers with unready status: [" + strings.Join(unready, " ") + "]"
	sandboxReady := map[bool]string{true: "False", false: "True"}[creating]
	initialized := map[bool]string{true: "False", false: "True"}[len(pod.Spec.InitContainers) > 0]
	status := map[string]any{
		"phase": "Pending", "startTime": now,
		"conditions": []any{
			map[string]any{"type": "PodReadyToStartContainers", "status": sandboxReady, "lastTransitionTime": now},
			map[string]any{"type": "Initialized", "status": initialized, "lastTransitionTime": now},
			map[string]any{"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": message,
				"lastTransitionTime": now},
			map[string]any{"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady",
				"message": message, "lastTransitionTime": now},
		},
		"containerStatuses": containers,
	}
	if len(inits) > 0 {
		status["initContainerStatuses"] = inits
	}

	if _, err = api.do(http.MethodPatch, podPath(pod)+"/status", "application/strategic-merge-patch+json",
		map[string]any{"status": status}, nil); err != nil {
		return err
	}

	events := map[string][]string{"FailedMount": why.mount}
	if why.sandbox != "" {
		events["FailedCreatePodSandBox"] = []string{why.sandbox}
	}

	if !creating {
		for _, problem := range why.containers {
			events["Failed"] = append(events["Failed"], "Error: "+problem)
		}
	}

	for reason, messages := range events {
		sort.Strings(messages)

		for _, text := range messages {
			if err := postEvent(api, pod, reason, text, now); err != nil {
				return err
			}
		}
	}

	g.written[pod.Metadata.UID] = string(fingerprint)

	return nil
}

// postEvent records a Warning event on the pod, as the kubelet of its node reports it.
func postEvent(api *kubeAPI, pod *gatePod, reason, message, now string) error {
	event := map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata": map[string]any{
			"name": fmt.Sprintf("%s.%x", pod.Metadata.Name, time.Now().UnixNano()), "namespace": pod.Metadata.Namespace,
		},
		"involvedObject": map[string]any{"apiVersion": "v1", "kind": "Pod", "name": pod.Metadata.Name,
			"namespace": pod.Metadata.Namespace, "uid": pod.Metadata.UID},
		"reason": reason, "message": message, "type": "Warning", "count": 1,
		"firstTimestamp": now, "lastTimestamp": now,
		"source": map[string]any{"component": "kubelet", "host": pod.Spec.NodeName},
	}
	_, err := api.do(http.MethodPost, "/api/v1/namespaces/"+pod.Metadata.Namespace+"/events", "application/json", event, nil)

	return err
}
