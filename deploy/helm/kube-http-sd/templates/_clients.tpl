{{/* What a prometheus-operator object needs to reach kube-http-sd: its auth and TLS settings, in
the CRDs' spelling (httpSDConfigs and ServiceMonitor endpoints take the same keys). */}}
{{- define "kube-http-sd.clientAuth" -}}
{{- if eq .Values.auth.type "bearer" }}
authorization:
  type: Bearer
  credentials:
    name: {{ include "kube-http-sd.authSecretName" . }}
    key: token
{{- else if eq .Values.auth.type "basic" }}
basicAuth:
  username:
    name: {{ include "kube-http-sd.authSecretName" . }}
    key: username
  password:
    name: {{ include "kube-http-sd.authSecretName" . }}
    key: password
{{- end }}
{{- if and .Values.tls.enabled .Values.scrapeConfigs.tlsConfig }}
tlsConfig:
  {{- toYaml .Values.scrapeConfigs.tlsConfig | nindent 2 }}
{{- end }}
{{- end }}
