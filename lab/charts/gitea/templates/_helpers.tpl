{{/* Lab stand-in helpers: the names the real chart gives its objects (release "gitea" -> "gitea"). */}}
{{- define "gitea.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gitea.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "gitea.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gitea.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gitea.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- define "gitea.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{ include "gitea.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
turnkey.cluster/lab-stand-in: "true"
{{- end -}}

{{/* Whether an initial admin is made (and so its credentials read), as the real chart decides: an existing Secret or
a user name. The real chart then creates the user with the password given, and its init container fails on an
empty one; the stand-in refuses to render that, so a release that would never start fails here too. */}}
{{- define "gitea.hasAdmin" -}}
{{- if or .Values.gitea.admin.existingSecret .Values.gitea.admin.username -}}
{{- if not (or .Values.gitea.admin.existingSecret .Values.gitea.admin.password) -}}
{{- fail (printf "gitea.admin.username is %q but no password is given (gitea.admin.password or existingSecret): the real chart's init container fails creating that admin; empty the username for no admin" .Values.gitea.admin.username) -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/* The flags of `gitea admin auth add-oauth` for OAuth source number .index: each key kebab-cased, the id and
the secret from the environment the init container reads from the source's existingSecret. */}}
{{- define "gitea.oauthFlags" -}}
{{- $flags := list -}}
{{- range $key, $value := .source -}}
{{- if and (ne $key "existingSecret") (ne $key "key") (ne $key "secret") -}}
{{- $flags = append $flags (printf "--%s %s" (kebabcase $key) (toString $value | quote)) -}}
{{- end -}}
{{- end -}}
{{- $flags = append $flags (printf "--key \"${GITEA_OAUTH_KEY_%d}\" --secret \"${GITEA_OAUTH_SECRET_%d}\"" .index .index) -}}
{{ join " " $flags }}
{{- end -}}

{{- define "gitea.rootUrl" -}}
{{- $host := (index .Values.ingress.hosts 0).host -}}
{{- .Values.gitea.config.server.ROOT_URL | default (printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) $host) -}}
{{- end -}}
