{%- from "roost/map.jinja" import roost with context %}
{%- from "roost/map.jinja" import docker_env, compose, bird_conf_ours with context %}
# roost.clean: remove everything the roost formula made on this node: the
# node's routes at the ToRs, the containers, the kernel blackhole routes
# roost-agent keeps (route protocol 167), the loader's pins (which detaches
# its programs), the images the formula loaded, and every file and directory
# it wrote or mounted (/var/lib/roost holds the agent's drain state too);
# the host's own bird.conf, kept aside at the first run, is put back. The bpffs mount and the Docker packages stay: other programs share
# them.

# Withdraw the node's routes first: stopping BIRD is a graceful restart,
# after which the ToRs would keep them as stale for BIRD's restart time.
roost-clean-withdraw:
  cmd.run:
    - name: docker exec roost-bird birdc -s {{ roost.paths.bird_run }}/bird.ctl disable all
    - env: {{ docker_env | json }}
    - onlyif: docker exec roost-bird true

roost-clean-containers:
  cmd.run:
    - name: {{ compose }} down --remove-orphans --timeout 10
    - cwd: {{ roost.paths.compose }}
    - env: {{ docker_env | json }}
    - onlyif: test -f {{ roost.paths.compose }}/docker-compose.yml
    - require:
      - cmd: roost-clean-withdraw

# Containers the compose file no longer names (or made without it).
{%- set containers = 'roost-bird roost-agent roost-loader roost-sync' %}
roost-clean-leftover-containers:
  cmd.run:
    - name: {{ ('for c in ' ~ containers ~ '; do if docker inspect "$c" >/dev/null 2>&1; then docker rm -f "$c"; fi; done') | json }}
    - env: {{ docker_env | json }}
    - onlyif: {{ ('for c in ' ~ containers ~ '; do if docker inspect "$c" >/dev/null 2>&1; then exit 0; fi; done; exit 1') | json }}
    - require:
      - cmd: roost-clean-containers

roost-clean-routes:
  cmd.run:
    - name: ip -4 route flush proto 167 && ip -6 route flush proto 167
    - onlyif: test -n "$(ip -4 route show proto 167)$(ip -6 route show proto 167)"
    - require:
      - cmd: roost-clean-leftover-containers

roost-clean-pins:
  file.absent:
    - name: {{ roost.loader.bpffs }}
    - require:
      - cmd: roost-clean-leftover-containers

{%- set images = [roost.images.bird, roost.images.roost] %}
roost-clean-images:
  cmd.run:
    - name: docker rmi {{ images | join(' ') }}
    - env: {{ docker_env | json }}
    - onlyif: docker image inspect {{ images | join(' ') }} >/dev/null 2>&1
    - require:
      - cmd: roost-clean-leftover-containers

# bird.conf: the host's own, kept as bird.conf.pre-roost by roost.config or
# bird-entrypoint, goes back; one roost wrote (the agent's or a bootstrap)
# goes; a file of the host's own with no backup beside it stays.
{%- set conf = roost.paths.bird_etc ~ '/bird.conf' %}
roost-clean-bird-conf:
  cmd.run:
    - name: {{ ('if [ -e ' ~ roost.paths.bird_backup ~ ' ]; then mv -f ' ~ roost.paths.bird_backup ~ ' ' ~ conf ~ ' && echo "restored the host\'s bird.conf"; else rm -f ' ~ conf ~ '; fi') | json }}
    - onlyif: {{ ('test -e ' ~ roost.paths.bird_backup ~ ' || ' ~ bird_conf_ours) | json }}
    - require:
      - cmd: roost-clean-leftover-containers

{%- for path in [roost.paths.etc, conf ~ '.broken', roost.paths.bird_run, roost.paths.agent_run, roost.paths.state, roost.paths.check] %}
roost-clean-{{ path }}:
  file.absent:
    - name: {{ path }}
    - require:
      - cmd: roost-clean-leftover-containers
{%- endfor %}
