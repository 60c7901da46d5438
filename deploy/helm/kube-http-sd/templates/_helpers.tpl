{{/* Names, labels and the pieces the standalone Deployment and the sidecar snippet share. */}}

{{- define "kube-http-sd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's objects are named this: the release name when it already says kube-http-sd
(release kube-http-sd gives the names of deploy/kubernetes), else <release>-kube-http-sd. */}}
{{- define "kube-http-sd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kube-http-sd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-http-sd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kube-http-sd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kube-http-sd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kube-http-sd
{{- end }}

{{- define "kube-http-sd.serviceAccountName" -}}
{{- if eq .Values.mode "sidecar" }}
{{- .Values.sidecar.serviceAccount.name }}
{{- else if .Values.serviceAccount.create }}
{{- default (include "kube-http-sd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kube-http-sd.serviceAccountNamespace" -}}
{{- if eq .Values.mode "sidecar" }}
{{- default .Release.Namespace .Values.sidecar.serviceAccount.namespace }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{- define "kube-http-sd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "kube-http-sd.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "kube-http-sd.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{- define "kube-http-sd.authSecretName" -}}
{{- default (printf "%s-auth" (include "kube-http-sd.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Where the pod finds its files: the config where the image looks, the Secrets beside it (not
inside: a mount point inside the read-only ConfigMap volume could not be made). */}}
{{- define "kube-http-sd.configDir" }}/etc/kube-http-sd{{ end }}
{{- define "kube-http-sd.tlsDir" }}/var/run/secrets/kube-http-sd/tls{{ end }}
{{- define "kube-http-sd.authDir" }}/var/run/secrets/kube-http-sd/auth{{ end }}

{{/* sd.yaml: .Values.config with the server's TLS and auth files filled in from .Values.tls and
.Values.auth (the files are the Secrets' keys, mounted by the container below). */}}
{{- define "kube-http-sd.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $server := deepCopy (default dict $config.server) }}
{{- if .Values.tls.enabled }}
{{- $_ := set $server "tls_cert_file" (printf "%s/tls.crt" (include "kube-http-sd.tlsDir" .)) }}
{{- $_ := set $server "tls_key_file" (printf "%s/tls.key" (include "kube-http-sd.tlsDir" .)) }}
{{- end }}
{{- if eq .Values.auth.type "bearer" }}
{{- $_ := set $server "bearer_token_file" (printf "%s/token" (include "kube-http-sd.authDir" .)) }}
{{- else if eq .Values.auth.type "basic" }}
{{- $_ := set $server "basic_auth_username" .Values.auth.username }}
{{- $_ := set $server "basic_auth_password_file" (printf "%s/password" (include "kube-http-sd.authDir" .)) }}
{{- end }}
{{- $_ := set $config "server" $server }}
{{- toYaml $config }}
{{- end }}

{{/* The kube-http-sd container: the standalone Deployment's, and the one the sidecar mode asks
you to add to a Prometheus pod. `prefix` is put before volume names (a Prometheus pod has its own). */}}
{{- define "kube-http-sd.container" -}}
{{- $root := .root }}
{{- $v := $root.Values -}}
name: kube-http-sd
image: {{ include "kube-http-sd.image" $root }}
imagePullPolicy: {{ $v.image.pullPolicy }}
args: [serve, --config, {{ include "kube-http-sd.configDir" $root }}/sd.yaml]
ports:
  - name: http
    containerPort: 8080
# Ready once every target set finished its first full list: until then /targets/* answers 503
# and Prometheus keeps its previous targets.
readinessProbe:
  httpGet:
    path: /readyz
    port: http
    {{- if $v.tls.enabled }}
    scheme: HTTPS
    {{- end }}
  periodSeconds: 5
  failureThreshold: 2
# Liveness never depends on the API server: during an API outage kube-http-sd keeps serving the
# last known targets, and restarting it would lose them.
livenessProbe:
  httpGet:
    path: /healthz
    port: http
    {{- if $v.tls.enabled }}
    scheme: HTTPS
    {{- end }}
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
resources:
  {{- toYaml $v.resources | nindent 2 }}
securityContext:
  {{- if eq $v.mode "sidecar" }}
  {{- /* The Prometheus pod's securityContext is not ours: say the user here. */}}
  runAsNonRoot: true
  runAsUser: {{ $v.podSecurityContext.runAsUser }}
  runAsGroup: {{ $v.podSecurityContext.runAsGroup }}
  {{- with $v.podSecurityContext.seccompProfile }}
  seccompProfile:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  {{- toYaml $v.securityContext | nindent 2 }}
volumeMounts:
  - name: {{ .prefix }}sd-config
    mountPath: {{ include "kube-http-sd.configDir" $root }}
    readOnly: true
  {{- if $v.tls.enabled }}
  - name: {{ .prefix }}tls
    mountPath: {{ include "kube-http-sd.tlsDir" $root }}
    readOnly: true
  {{- end }}
  {{- if ne $v.auth.type "none" }}
  - name: {{ .prefix }}auth
    mountPath: {{ include "kube-http-sd.authDir" $root }}
    readOnly: true
  {{- end }}
  # The program writes no files; a small writable /tmp keeps any library that wants a temp
  # file from failing on the read-only root.
  - name: {{ .prefix }}tmp
    mountPath: /tmp
{{- end }}

{{- define "kube-http-sd.volumes" -}}
{{- $root := .root }}
{{- $v := $root.Values -}}
- name: {{ .prefix }}sd-config
  configMap:
    name: {{ include "kube-http-sd.fullname" $root }}
    items:
      - key: sd.yaml
        path: sd.yaml
{{- if $v.tls.enabled }}
- name: {{ .prefix }}tls
  secret:
    secretName: {{ include "kube-http-sd.tlsSecretName" $root }}
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
{{- end }}
{{- if ne $v.auth.type "none" }}
- name: {{ .prefix }}auth
  secret:
    secretName: {{ include "kube-http-sd.authSecretName" $root }}
    items:
      - key: {{ eq $v.auth.type "bearer" | ternary "token" "password" }}
        path: {{ eq $v.auth.type "bearer" | ternary "token" "password" }}
{{- end }}
- name: {{ .prefix }}tmp
  emptyDir:
    sizeLimit: 16Mi
{{- end }}

{{/* Where a Prometheus reads the sets: the Service, or localhost beside it in sidecar mode. */}}
{{- define "kube-http-sd.url" -}}
{{- $scheme := .Values.tls.enabled | ternary "https" "http" }}
{{- if eq .Values.mode "sidecar" }}
{{- printf "%s://localhost:8080" $scheme }}
{{- else }}
{{- printf "%s://%s.%s.svc:%v" $scheme (include "kube-http-sd.fullname" .) .Release.Namespace .Values.service.port }}
{{- end }}
{{- end }}
