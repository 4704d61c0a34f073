{%- from "roost/map.jinja" import roost with context %}
{%- from "roost/map.jinja" import docker_env, compose, etcd_users with context %}
# roost.compose: the compose stack. `up -d` runs when the compose file, its
# .env or the images changed, and when a container is missing or stopped;
# config-only changes never restart a container.
include:
  - roost.bpffs
  - roost.images
  - roost.config

roost-compose-file:
  file.managed:
    - name: {{ roost.paths.compose }}/docker-compose.yml
    - source: salt://roost/files/docker-compose.yml
    - makedirs: True
    - mode: '0644'

roost-compose-env:
  file.managed:
    - name: {{ roost.paths.compose }}/.env
    - source: salt://roost/files/compose.env.jinja
    - template: jinja
    - makedirs: True
    - mode: '0644'

# The loader reads loader.yaml (and the etcd TLS files it names) only at
# start (its endpoints and policies it watches); a change to it restarts the
# loader, which adopts its pins. Before the first `up` there is no
# container to restart.
roost-loader-restart:
  cmd.run:
    - name: docker restart roost-loader
    - env: {{ docker_env | json }}
    - onlyif: docker inspect roost-loader >/dev/null 2>&1
    - onchanges:
      - file: roost-loader.yaml
{%- for path in etcd_users.get('roost-loader', []) %}
      - file: roost-stage-{{ path }}
{%- endfor %}
    - require:
      - cmd: roost-validate

# roost-agent refuses a reload that changes a setting it reads only at start
# (its node, the Kubernetes source, blackhole routes, the VIPs' sources and
# table; listen goes through .env and recreates it anyway): when one of them
# changes, it is restarted, after the new agent.yaml is in place. BIRD and
# its sessions stay, and so does a drain (the agent's state file).
roost-agent-start-settings:
  file.managed:
    - name: {{ roost.paths.state }}/agent-start-settings
    - makedirs: True
    - mode: '0644'
    - contents: |
        # Managed by Salt: roost-agent is restarted when these change.
        node: {{ roost.node | json }}
        kubernetes: {{ roost.kubernetes | json }}
        blackhole_routes: {{ roost.agent.blackhole_routes | json }}
        vips: {{ {'services': roost.vips.services, 'kubernetes': roost.vips.kubernetes, 'table': roost.vips.table} | json }}
    - require:
      - file: roost-agent.yaml

roost-agent-restart:
  cmd.run:
    - name: docker restart roost-agent
    - env: {{ docker_env | json }}
    - onlyif: docker inspect roost-agent >/dev/null 2>&1
    - onchanges:
      - file: roost-agent-start-settings

roost-compose-up:
  cmd.run:
    - name: {{ compose }} up -d
    - cwd: {{ roost.paths.compose }}
    - env: {{ docker_env | json }}
    - onchanges:
      - file: roost-compose-file
      - file: roost-compose-env
      - cmd: roost-images
    - require:
      - cmd: roost-validate
      - cmd: roost-loader-restart
      - cmd: roost-agent-restart
      - file: roost-agent.yaml
      - file: roost-loader.yaml
      - file: roost-endpoints.yaml
      - file: roost-services.yaml
      - file: roost-policies
      - file: roost-bird-conf
      - file: roost-bird-run
{%- if roost.bpffs.mount %}
      - cmd: roost-bpffs-shared
{%- endif %}

roost-compose-running:
  cmd.run:
    - name: {{ compose }} up -d
    - cwd: {{ roost.paths.compose }}
    - env: {{ docker_env | json }}
    - unless: {{ roost.paths.check }} running
    - require:
      - cmd: roost-compose-up
