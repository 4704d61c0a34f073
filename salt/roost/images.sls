{%- from "roost/map.jinja" import roost with context %}
{%- from "roost/map.jinja" import docker_env with context %}
# roost.images: the BIRD and roost images in the local engine, loaded from
# tarballs (roost:images:tarballs, the air-gapped path) or pulled. Tags are
# taken as immutable: an image is loaded or pulled only while it is missing.
# It needs the engine (roost.docker), also when applied alone, or through
# roost.config, roost.compose or roost.sync.
include:
  - roost.docker
{%- set images = [roost.images.bird, roost.images.roost] %}
{%- set present = 'docker image inspect ' ~ images | join(' ') ~ ' >/dev/null 2>&1' %}
{%- set deps = [] %}
{%- if roost.docker.manage_service %}{% do deps.append({'service': 'roost-docker-service'}) %}{% endif %}

roost-images-dir:
  file.directory:
    - name: {{ roost.paths.images }}
    - makedirs: True
    - mode: '0700'

{%- if roost.images.tarballs %}
{%-   for t in roost.images.tarballs %}
roost-image-tarball-{{ loop.index }}:
  file.managed:
    - name: {{ roost.paths.images }}/{{ salt['file.basename'](t) }}
    - source: {{ t }}
    - skip_verify: True
    - mode: '0600'
    - require:
      - file: roost-images-dir
    - require_in:
      - cmd: roost-images
{%-   endfor %}

roost-images:
  cmd.run:
    - name: |
        set -e
{%-   for t in roost.images.tarballs %}
        docker load -q -i {{ roost.paths.images }}/{{ salt['file.basename'](t) }}
{%-   endfor %}
        {{ present }}
    - unless: {{ present }}
    - env: {{ docker_env | json }}
{%-   if deps %}
    - require: {{ deps | json }}
{%-   endif %}
{%- else %}

roost-images:
  cmd.run:
    - name: |
        set -e
{%-   for i in images %}
        docker image inspect {{ i }} >/dev/null 2>&1 || docker pull -q {{ i }}
{%-   endfor %}
    - unless: {{ present }}
    - env: {{ docker_env | json }}
{%-   if deps %}
    - require: {{ deps | json }}
{%-   endif %}
{%- endif %}
