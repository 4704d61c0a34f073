{%- from "roost/map.jinja" import roost, docker_env, etcd_users with context %}
# roost.sync: roost-sync on the nodes whose pillar enables it
# (roost:sync:enabled): it registers outside workloads (VMs, bare metal)
# into the global endpoint view on etcd, from workloads.yaml and through
# its HTTP API. sync.yaml and workloads.yaml join roost.config's staged
# set: checked with the rest (roost-sync --dry-run, by roost-check) before
# anything lands, so a bad sync pillar changes nothing either. The
# container is the compose file's service roost-sync, in the profile
# "sync", which .env turns on (COMPOSE_PROFILES); roost.compose starts it.
# With sync disabled, the container and the files go.
include:
  - roost.config
  - roost.compose

{%- set files = {'sync.yaml': 'sync.yaml.jinja', 'workloads.yaml': 'workloads.yaml.jinja'} %}
{%- if roost.sync.enabled %}
{%-   for name, tmpl in files.items() %}
roost-stage-{{ name }}:
  file.managed:
    - name: {{ roost.paths.stage }}/{{ name }}
    - source: salt://roost/files/{{ tmpl }}
    - template: jinja
    - makedirs: True
    - mode: '0600'
    - require_in:
      - cmd: roost-validate
{%-   endfor %}
{%-   for name, tmpl in files.items() %}

roost-{{ name }}:
  file.managed:
    - name: {{ roost.paths.etc }}/{{ name }}
    - source: salt://roost/files/{{ tmpl }}
    - template: jinja
    - mode: '0640'
    - check_cmd: {{ roost.paths.check_staged }} {{ name.split('.')[0] }}
    - failhard: True
    - require:
      - cmd: roost-validate
      - file: roost-etc
    - require_in:
      - cmd: roost-compose-up
{%-   endfor %}

# roost-sync reads sync.yaml and its TLS files only at start (workloads.yaml
# it watches): a change restarts it. Before the first `up` there is no
# container to restart.
roost-sync-restart:
  cmd.run:
    - name: docker restart roost-sync
    - env: {{ docker_env | json }}
    - onlyif: docker inspect roost-sync >/dev/null 2>&1
    - onchanges:
      - file: roost-sync.yaml
{%-   for path in etcd_users.get('roost-sync', []) %}
      - file: roost-stage-{{ path }}
{%-   endfor %}
    - require:
      - cmd: roost-validate
    - require_in:
      - cmd: roost-compose-up
{%- else %}

# Off: no container, no files. After the check, like every change.
roost-sync-absent:
  cmd.run:
    - name: docker rm -f roost-sync
    - env: {{ docker_env | json }}
    - onlyif: docker inspect roost-sync >/dev/null 2>&1
    - require:
      - cmd: roost-validate
{%-   for name in files %}

roost-stage-{{ name }}:
  file.absent:
    - name: {{ roost.paths.stage }}/{{ name }}
    - require_in:
      - cmd: roost-validate

roost-{{ name }}:
  file.absent:
    - name: {{ roost.paths.etc }}/{{ name }}
    - require:
      - cmd: roost-sync-absent
{%-   endfor %}
{%- endif %}
