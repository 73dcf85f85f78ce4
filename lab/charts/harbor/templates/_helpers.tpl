{{/* Lab stand-in helpers: the names the real chart gives its objects (release "harbor" -> "harbor-core" ...). */}}
{{- define "harbor.name" -}}
{{- .Values.nameOverride | default "harbor" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "harbor.fullname" -}}
{{- $name := include "harbor.name" . -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "harbor.core" -}}{{ include "harbor.fullname" . }}-core{{- end -}}
{{- define "harbor.jobservice" -}}{{ include "harbor.fullname" . }}-jobservice{{- end -}}
{{- define "harbor.portal" -}}{{ include "harbor.fullname" . }}-portal{{- end -}}
{{- define "harbor.ingress" -}}{{ include "harbor.fullname" . }}-ingress{{- end -}}

{{/* The Ingress' certificate: none, expose.tls.secret.secretName, or the chart's own (auto) */}}
{{- define "harbor.tlsSecret" -}}
{{- if eq .Values.expose.tls.certSource "secret" -}}{{ .Values.expose.tls.secret.secretName }}
{{- else if ne .Values.expose.tls.certSource "none" -}}{{ include "harbor.ingress" . }}
{{- end -}}
{{- end -}}

{{- define "harbor.matchLabels" -}}
release: {{ .Release.Name }}
app: {{ include "harbor.name" . | quote }}
{{- end -}}

{{- define "harbor.labels" -}}
{{ include "harbor.matchLabels" . }}
heritage: {{ .Release.Service }}
chart: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/name: {{ include "harbor.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
turnkey.cluster/lab-stand-in: "true"
{{- end -}}

{{/* The encryption key given in the values (none with existingSecretSecretKey). harbor-core encrypts with it the
secrets it keeps (the OIDC client secret among them) and fails on a key that is not 16 characters, as the real
chart's values say; the stand-in refuses to render one, so a release that would never start fails here too. */}}
{{- define "harbor.secretKey" -}}
{{- if not .Values.existingSecretSecretKey -}}
{{- if ne (len .Values.secretKey) 16 -}}
{{- fail (printf "secretKey is %d characters, not 16: harbor-core fails on it; give 16 characters, or existingSecretSecretKey" (len .Values.secretKey)) -}}
{{- end -}}
{{- .Values.secretKey -}}
{{- end -}}
{{- end -}}
