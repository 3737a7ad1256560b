{{/*
The chart's name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "stockade.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: the release name alone when it already contains the
chart's name, else "<release>-<chart>".
*/}}
{{- define "stockade.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "stockade.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every object carries.
*/}}
{{- define "stockade.labels" -}}
helm.sh/chart: {{ include "stockade.chart" . }}
{{ include "stockade.selectorLabels" . }}
{{- with .Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: stable across upgrades, so never the chart version.
*/}}
{{- define "stockade.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stockade.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the pods use.
*/}}
{{- define "stockade.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stockade.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: a digest wins over a tag; the tag defaults to appVersion.
*/}}
{{- define "stockade.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Whether a policy file is mounted.
*/}}
{{- define "stockade.hasPolicy" -}}
{{- if or .Values.policy.existingConfigMap .Values.policy.content }}true{{ end }}
{{- end }}

{{/*
stockade's config file: the user's `config` with the keys the chart owns laid
over it (listen address and port, the data volume, the storage backend, the
mounted policy file).
*/}}
{{- define "stockade.config" -}}
{{- $storage := dict "path" "/var/lib/stockade" }}
{{- if eq .Values.storage.backend "s3" }}
{{- $_ := set $storage "backend" "s3" }}
{{- $_ := set $storage "s3" (deepCopy .Values.storage.s3) }}
{{- end }}
{{- $server := dict "host" "0.0.0.0" "port" (int .Values.containerPort) }}
{{- if .Values.frontServer.enabled }}
{{- $_ := set $server "accel_redirect" (dict "prefix" "/_stockade_blobs/") }}
{{- end }}
{{- if .Values.tls.secretName }}
{{- $tls := dict "cert" "/etc/stockade-tls/tls.crt" "key" "/etc/stockade-tls/tls.key" }}
{{- if .Values.tls.clientCASecret }}
{{- $_ := set $tls "client_ca" (printf "/etc/stockade-client-ca/%s" .Values.tls.clientCAKey) }}
{{- end }}
{{- $_ := set $server "tls" $tls }}
{{- end }}
{{- $owned := dict "server" $server "storage" $storage }}
{{- if include "stockade.hasPolicy" . }}
{{- $_ := set $owned "policy" (dict "file" "/etc/stockade/policy.yaml") }}
{{- end }}
{{- if .Values.auth.tokensSecret }}
{{- $_ := set $owned "auth" (dict "tokens" (printf "/etc/stockade-auth/%s" .Values.auth.tokensKey)) }}
{{- end }}
{{- mustMergeOverwrite (deepCopy (default dict .Values.config)) $owned | toYaml }}
{{- end }}

{{/*
The name of the ConfigMap holding policy.yaml.
*/}}
{{- define "stockade.policyConfigMap" -}}
{{- default (printf "%s-policy" (include "stockade.fullname" .)) .Values.policy.existingConfigMap }}
{{- end }}

{{/*
Refuse value combinations that cannot work, with a sentence saying why.
*/}}
{{- define "stockade.validate" -}}
{{- if and .Values.tls.secretName .Values.frontServer.enabled }}
{{- fail "tls.secretName with frontServer.enabled: the front server's nginx speaks plain HTTP to stockade; terminate TLS in front of the chart instead, or turn frontServer off" }}
{{- end }}
{{- if and .Values.tls.clientCASecret (not .Values.tls.secretName) }}
{{- fail "tls.clientCASecret needs tls.secretName: client certificates are asked for only over TLS" }}
{{- end }}
{{- if and .Values.persistence.enabled (eq .Values.storage.backend "filesystem") (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "persistence.enabled with the filesystem backend serves one replica (one volume, one writer): set replicaCount to 1 and autoscaling.enabled to false, or use storage.backend s3 for several replicas" }}
{{- end }}
{{- end }}

{{/*
The front server's nginx.conf (frontServer.enabled): everything to stockade; the
internal location stockade's X-Accel-Redirect names, on the data volume.
*/}}
{{- define "stockade.frontConfig" -}}
worker_processes auto;
daemon off;
pid /tmp/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    upstream stockade { server 127.0.0.1:{{ .Values.containerPort }}; keepalive 32; }
    server {
        listen {{ .Values.frontServer.containerPort }};
        client_max_body_size 0;
        location / {
            proxy_pass http://stockade;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffers 32 16k;  # large packuments stream through in fewer, larger reads
        }
        # Only stockade's X-Accel-Redirect reaches this: clients cannot ask for it.
        location /_stockade_blobs/ {
            internal;
            alias /var/lib/stockade/;
            add_header X-Stockade-Cache $upstream_http_x_stockade_cache always;
            add_header X-Checksum-Sha1 $upstream_http_x_checksum_sha1 always;
            add_header X-Checksum-Md5 $upstream_http_x_checksum_md5 always;
            add_header X-Checksum-Sha256 $upstream_http_x_checksum_sha256 always;
            add_header X-Request-Id $upstream_http_x_request_id always;
            add_header Vary $upstream_http_vary always;
            # a rendered packument's gzip form lies beside it as <file>.gz
            gzip_static on;
            etag off;
            add_header ETag $upstream_http_etag always;
        }
    }
}
{{- end }}

{{/*
A probe of stockade's port at the path given: HTTP, or HTTPS with tls.secretName;
with tls.clientCASecret only whether the port accepts connections, since the
kubelet cannot present a client certificate.
*/}}
{{- define "stockade.probe" -}}
{{- if .root.Values.tls.clientCASecret }}
tcpSocket:
  port: http
{{- else }}
httpGet:
  path: {{ .path }}
  port: http
  {{- if .root.Values.tls.secretName }}
  scheme: HTTPS
  {{- end }}
{{- end }}
{{- end }}
