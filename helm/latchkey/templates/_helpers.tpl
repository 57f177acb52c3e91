{{/*
Names and labels.
*/}}
{{- define "latchkey.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "latchkey.fullname" -}}
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

{{- define "latchkey.selectorLabels" -}}
app.kubernetes.io/name: {{ include "latchkey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "latchkey.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "latchkey.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: latchkey
{{- end }}

{{- define "latchkey.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "latchkey.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "latchkey.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "latchkey.pvcName" -}}
{{- default (printf "%s-data" (include "latchkey.fullname" .)) .Values.store.sqlite.persistence.existingClaim }}
{{- end }}

{{/*
Where things live in the container (the Dockerfile's layout).
*/}}
{{- define "latchkey.configDir" -}}/etc/latchkey{{- end }}
{{- define "latchkey.configFile" -}}/etc/latchkey/latchkey.toml{{- end }}
{{- define "latchkey.dataDir" -}}/var/lib/latchkey{{- end }}

{{/*
The shapes the chart refuses, with the reason. Included by every template
that depends on them, so `helm lint` and `helm install` both stop here.
*/}}
{{- define "latchkey.validate" -}}
{{- $store := .Values.store.type }}
{{- if eq $store "sqlite" }}
{{- if ne (int .Values.replicaCount) 1 }}
{{- fail (printf "store.type sqlite runs exactly one replica (one process owns the database file), but replicaCount is %v: use store.type postgres for more" .Values.replicaCount) }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- fail "store.type sqlite runs exactly one replica: autoscaling.enabled must be false (use store.type postgres to scale)" }}
{{- end }}
{{- if eq .Values.migrations.strategy "hook" }}
{{- fail "store.type sqlite needs migrations.strategy initContainer: a pre-install hook's pod would need the PVC before it exists, and the ReadWriteOnce volume the running pod holds" }}
{{- end }}
{{- else if eq $store "postgres" }}
{{- if not .Values.store.postgres.existingSecret }}
{{- fail "store.type postgres needs store.postgres.existingSecret: the Secret holding the database URL (never the URL itself in values)" }}
{{- end }}
{{- end }}
{{- if not .Values.masterKey.existingSecret }}
{{- fail "masterKey.existingSecret must name the Secret holding LATCHKEY_MASTER_KEY (base64 of 32 random bytes)" }}
{{- end }}
{{- range $key := list "grpc_addr" "http_addr" "data_dir" "migrate_on_start" "database_url" }}
{{- if hasKey $.Values.config $key }}
{{- fail (printf "config.%s is set by the chart (listeners from service.*, data_dir from the volume, migrate_on_start from migrations.strategy, database_url from store.postgres.existingSecret): remove it from config" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.tls.clientCa.existingSecret (not .Values.tls.existingSecret) }}
{{- fail "tls.clientCa.existingSecret (mTLS) needs tls.existingSecret: the server's own certificate and key" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.enabled (the metrics port to scrape)" }}
{{- end }}
{{- $grace := 20 }}{{/* Latchkey's default shutdown_grace_seconds */}}
{{- if hasKey .Values.config "shutdown_grace_seconds" }}{{ $grace = int .Values.config.shutdown_grace_seconds }}{{ end }}
{{- if le (int .Values.terminationGracePeriodSeconds) $grace }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.shutdown_grace_seconds (%d), or the kubelet kills the pod mid-drain" .Values.terminationGracePeriodSeconds $grace) }}
{{- end }}
{{- end }}

{{/*
latchkey.toml: the chart's own keys, then .Values.config. Written by hand,
not with toToml: Helm reads YAML numbers as floats, and toToml would write
`20.0` where Latchkey's integer fields need `20`.
*/}}
{{- define "latchkey.config" -}}
{{- $own := dict
  "grpc_addr" (printf "0.0.0.0:%d" (int .Values.service.grpcPort))
  "http_addr" (printf "0.0.0.0:%d" (int .Values.service.httpPort))
  "data_dir" (include "latchkey.dataDir" .)
  "migrate_on_start" false
}}
{{- if .Values.tls.existingSecret }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" (include "latchkey.tlsDir" .)) "key_file" (printf "%s/tls.key" (include "latchkey.tlsDir" .)) }}
{{- if .Values.tls.clientCa.existingSecret }}
{{- $_ := set $tls "client_ca_file" (printf "%s/ca.crt" (include "latchkey.clientCaDir" .)) }}
{{- end }}
{{- $_ := set $own "tls" $tls }}
{{- end }}
{{- $all := merge (deepCopy $own) (deepCopy .Values.config) -}}
# latchkey.toml, rendered by the latchkey Helm chart from its values.
# Check a copy with: latchkey config check latchkey.toml
{{ include "latchkey.toml.table" (dict "table" $all "path" "") | trim }}
{{- end }}

{{/* One TOML table: its plain keys, then its sub-tables. Keys are sorted. */}}
{{- define "latchkey.toml.table" -}}
{{- $table := .table }}
{{- $path := .path }}
{{- range $key := keys $table | sortAlpha }}
{{- $v := index $table $key }}
{{- if and (not (kindIs "map" $v)) (not (kindIs "invalid" $v)) }}
{{ include "latchkey.toml.key" $key }} = {{ include "latchkey.toml.value" $v }}
{{- end }}
{{- end }}
{{- range $key := keys $table | sortAlpha }}
{{- $v := index $table $key }}
{{- if kindIs "map" $v }}
{{- $sub := include "latchkey.toml.key" $key }}
{{- if $path }}{{ $sub = printf "%s.%s" $path $sub }}{{ end }}

[{{ $sub }}]
{{- include "latchkey.toml.table" (dict "table" $v "path" $sub) }}
{{- end }}
{{- end }}
{{- end }}

{{/* A bare key if it is one, else a quoted key. */}}
{{- define "latchkey.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/* A TOML value: string, integer, float, boolean, array or inline table. */}}
{{- define "latchkey.toml.value" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}{{ toJson $v }}
{{- else if kindIs "bool" $v }}{{ ternary "true" "false" $v }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) }}{{ $v }}
{{- else if kindIs "float64" $v }}
{{- if eq $v (float64 (int64 $v)) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if kindIs "slice" $v }}[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "latchkey.toml.value" $e }}{{ end }}]
{{- else if kindIs "map" $v }}{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }}, {{ else }} {{ end }}{{ include "latchkey.toml.key" $k }} = {{ include "latchkey.toml.value" (index $v $k) }}{{ end }} }
{{- else }}{{ fail (printf "config: cannot write %v (%s) as TOML" $v (kindOf $v)) }}
{{- end }}
{{- end }}

{{/* Where the TLS Secrets are mounted (read-only, whole: no subPath, so a rotation reaches the files). */}}
{{- define "latchkey.tlsDir" -}}/etc/latchkey/tls{{- end }}
{{- define "latchkey.clientCaDir" -}}/etc/latchkey/client-ca{{- end }}
