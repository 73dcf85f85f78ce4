{{/* Lab stand-in helpers: the names the real chart gives its objects (release "synapse" ->
"synapse-matrix-synapse", or fullnameOverride). */}}
{{- define "matrix-synapse.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "matrix-synapse.fullname" -}}
{{- $name := include "matrix-synapse.name" . -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "matrix-synapse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "matrix-synapse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "matrix-synapse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "matrix-synapse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
turnkey.cluster/lab-stand-in: "true"
{{- end -}}

{{/* Where the database and Redis are, and their passwords, as the real chart decides. It requires
postgresql.auth.password with the bundled PostgreSQL even when auth.existingSecret holds the password, a serverName,
and externalRedis.host without the bundled Redis: the stand-in fails on the same values. */}}
{{- define "matrix-synapse.postgresql.host" -}}
{{- if .Values.postgresql.enabled -}}{{ .Release.Name }}-postgresql
{{- else -}}{{ required "A valid externalPostgresql.host is required" .Values.externalPostgresql.host }}
{{- end -}}
{{- end -}}

{{- define "matrix-synapse.postgresql.password" -}}
{{- if .Values.postgresql.enabled -}}
{{- required "A valid postgresql.auth.password is required" .Values.postgresql.auth.password -}}
{{- else if not .Values.externalPostgresql.existingSecret -}}
{{- required "A valid externalPostgresql.password is required" .Values.externalPostgresql.password -}}
{{- end -}}
{{- end -}}

{{- define "matrix-synapse.redis.host" -}}
{{- if .Values.redis.enabled -}}{{ .Release.Name }}-redis-master
{{- else -}}{{ required "A valid externalRedis.host is required" .Values.externalRedis.host }}
{{- end -}}
{{- end -}}

{{- define "matrix-synapse.serverName" -}}
{{- required "You need to specify a serverName" .Values.serverName -}}
{{- end -}}
