{{/*
Environment from existing Secrets, shared by the server, the init container
and the migration Job. `what` picks the variables a command reads.
*/}}
{{- define "latchkey.storeEnv" -}}
{{- if eq .Values.store.type "postgres" }}
- name: LATCHKEY_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.store.postgres.existingSecret | quote }}
      key: {{ .Values.store.postgres.key | quote }}
{{- end }}
{{- with .Values.logLevel }}
- name: LATCHKEY_LOG
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{- define "latchkey.serverEnv" -}}
{{- include "latchkey.storeEnv" . }}
- name: LATCHKEY_MASTER_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.masterKey.existingSecret | quote }}
      key: {{ .Values.masterKey.key | quote }}
{{- with .Values.bootstrapAdminToken.existingSecret }}
- name: LATCHKEY_BOOTSTRAP_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.Values.bootstrapAdminToken.key | quote }}
{{- end }}
{{- with .Values.redis.existingSecret }}
- name: LATCHKEY_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.Values.redis.key | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
