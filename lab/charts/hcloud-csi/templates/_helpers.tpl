{{/* Lab stand-in helpers: the names the real chart gives its objects (release "hcloud-csi" -> "hcloud-csi-*"). */}}
{{- define "hcloud-csi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hcloud-csi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "hcloud-csi.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "hcloud-csi.labels" -}}
app.kubernetes.io/name: {{ include "hcloud-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
turnkey.cluster/lab-stand-in: "true"
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "hcloud-csi.selector" -}}
app.kubernetes.io/name: {{ include "hcloud-csi.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hcloud-csi.tokenSecret" -}}
{{- if .Values.controller.hcloudToken.value -}}
{{- include "hcloud-csi.fullname" . -}}
{{- else -}}
{{- required "controller.hcloudToken.existingSecret.name is required when no token value is given" .Values.controller.hcloudToken.existingSecret.name -}}
{{- end -}}
{{- end -}}
