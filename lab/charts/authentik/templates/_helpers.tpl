{{/* Lab stand-in helpers: the names the real chart gives its objects (release "authentik" -> "authentik-server"). */}}
{{- define "authentik.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "authentik.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "authentik.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "authentik.namespace" -}}
{{- default .Release.Namespace .Values.global.namespaceOverride -}}
{{- end -}}

{{- define "authentik.secretName" -}}
{{- default (include "authentik.fullname" .) .Values.authentik.existingSecret.secretName -}}
{{- end -}}

{{- define "authentik.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | quote }}
{{ include "authentik.selector" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service | quote }}
app.kubernetes.io/part-of: "authentik"
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
turnkey.cluster/lab-stand-in: "true"
{{- with .root.Values.global.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "authentik.selector" -}}
app.kubernetes.io/name: {{ include "authentik.name" .root | quote }}
app.kubernetes.io/instance: {{ .root.Release.Name | quote }}
{{- with .component }}
app.kubernetes.io/component: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The authentik.* settings as the real chart's Secret holds them: AUTHENTIK_<KEY>, nested maps joined by "__",
     strings through tpl, empty values left out; each line "NAME: base64". */}}
{{- define "authentik.env" -}}
{{- range $key, $value := .values -}}
{{- $name := printf "%s%s" $.prefix (upper $key) -}}
{{- if kindIs "map" $value -}}
{{- include "authentik.env" (dict "root" $.root "values" $value "prefix" (printf "%s__" $name)) -}}
{{- else -}}
{{- $text := ternary (tpl (toString $value) $.root) (toString $value) (kindIs "string" $value) -}}
{{- if ne $text "" }}
{{ $name }}: {{ $text | b64enc | quote }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* One container of server or worker: the real chart's env (global.env + <component>.env) and envFrom (the chart's
     Secret first). */}}
{{- define "authentik.container" -}}
- name: {{ .component.name }}
  image: "{{ .root.Values.global.image.repository }}:{{ default .root.Chart.AppVersion .root.Values.global.image.tag }}"
  imagePullPolicy: {{ .root.Values.global.image.pullPolicy }}
  args: [{{ .args }}]
  {{- with (concat .root.Values.global.env .component.env) }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  envFrom:
    - secretRef:
        name: {{ include "authentik.secretName" .root }}
    {{- with (concat .root.Values.global.envFrom .component.envFrom) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .root.Values.global.volumeMounts }}
  volumeMounts:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
