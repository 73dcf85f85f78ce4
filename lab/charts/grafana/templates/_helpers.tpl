{{/* Lab stand-in helpers: the names the real chart gives its objects (release "grafana" -> "grafana"). */}}
{{- define "grafana.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "grafana.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "grafana.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "grafana.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "grafana.selector" -}}
app.kubernetes.io/name: {{ include "grafana.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- define "grafana.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{ include "grafana.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
turnkey.cluster/lab-stand-in: "true"
{{- end -}}

{{/* Whether the chart makes an initial admin (and so reads its user and password from a Secret). */}}
{{- define "grafana.hasAdmin" -}}
{{- if not .Values.env.GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION -}}true{{- end -}}
{{- end -}}

{{/* One grafana.ini value: strings through tpl, null as an empty value. */}}
{{- define "grafana.iniValue" -}}
{{- if kindIs "invalid" .value -}}
{{- else if kindIs "string" .value -}}
{{ tpl .value .root }}
{{- else -}}
{{ .value }}
{{- end -}}
{{- end -}}
