{%- from "roost/map.jinja" import roost, bird_conf_ours, etcd_files with context %}
# roost.config: renders the node's roost config from the pillar, checks it
# as a whole with the binaries' --dry-run, and only then lets it land in
# /etc/roost. A pillar that fails the check stops the run (failhard) before
# anything the stack reads has changed. roost-agent and roost-loader watch
# these files: a change reaches BIRD and the datapath without a restart.
{%- set files = {
      'agent.yaml': 'agent.yaml.jinja',
      'loader.yaml': 'loader.yaml.jinja',
      'endpoints.yaml': 'endpoints.yaml.jinja',
      'services.yaml': 'services.yaml.jinja',
    } %}
{%- from "roost/hostcheck.jinja" import host_conflicts with context %}
{#- A BIRD (or any BGP speaker) of the host's own on TCP port 179, or one
    holding BIRD's control socket, would clash with the BIRD container:
    refuse to render, so that nothing changes (test=True fails too). #}
{%- set conflicts = host_conflicts() | trim %}
{%- if conflicts %}
{{- raise('roost cannot run beside what this host already runs, so nothing was changed: ' ~ conflicts ~ '. Stop it first (for Debian\'s bird2: systemctl disable --now bird); docs/deploy.md, "A BIRD already on the host".') }}
{%- endif %}
include:
  - roost.images

# The check script is staged too: it validates the set before anything
# lands, and lands itself (as roost-check) only once the set passed, so a
# run that fails leaves the installed one as it was.
roost-check-staged:
  file.managed:
    - name: {{ roost.paths.check_staged }}
    - source: salt://roost/files/roost-check.sh.jinja
    - template: jinja
    - makedirs: True
    - mode: '0755'

roost-check:
  file.managed:
    - name: {{ roost.paths.check }}
    - source: salt://roost/files/roost-check.sh.jinja
    - template: jinja
    - mode: '0755'
    - require:
      - cmd: roost-validate

# 1. Stage: the whole set, rendered where nothing reads it.
{%- for name, tmpl in files.items() %}
roost-stage-{{ name }}:
  file.managed:
    - name: {{ roost.paths.stage }}/{{ name }}
    - source: salt://roost/files/{{ tmpl }}
    - template: jinja
    - makedirs: True
    - mode: '0600'
{%- endfor %}
{%- for name, policy in roost.policies | dictsort %}
roost-stage-policy-{{ name }}:
  file.managed:
    - name: {{ roost.paths.stage }}/policies/{{ name }}.yaml
    - source: salt://roost/files/policy.yaml.jinja
    - template: jinja
    - makedirs: True
    - mode: '0644'
    - context:
        name: {{ name | json }}
        policy: {{ policy | json }}
{%- endfor %}

# The etcd clients' TLS files (loader:global_view:etcd, sync:etcd) are the
# node's own, under /etc/roost: copies join the staged set, so that the
# dry-runs find them where loader.yaml and sync.yaml name them. A change
# of one restarts the container that reads it (roost.compose, roost.sync).
{%- for path in etcd_files %}
roost-stage-{{ path }}:
  file.managed:
    - name: {{ roost.paths.stage }}/{{ path[roost.paths.etc | length + 1:] }}
    - source: {{ path }}
    - makedirs: True
    - mode: '0600'
    - show_changes: False
    - failhard: True
{%- endfor %}

roost-stage-policies:
  file.directory:
    - name: {{ roost.paths.stage }}/policies
    - makedirs: True
    - clean: True
{%- if roost.policies %}
    - require:
{%-   for name in roost.policies | sort %}
      - file: roost-stage-policy-{{ name }}
{%-   endfor %}
{%- endif %}

# 2. Check the staged set. Runs the check only when it fails (unless), so a
# valid pillar reports no change; failhard stops the whole run on a bad one.
roost-validate:
  cmd.run:
    - name: '{{ roost.paths.check_staged }} tree {{ roost.paths.stage }} && echo "roost: staged config valid"'
    - unless: '{{ roost.paths.check_staged }} tree {{ roost.paths.stage }}'
    - failhard: True
    - require:
      - file: roost-check-staged
      - cmd: roost-images
      - file: roost-stage-policies
{%- for name in files %}
      - file: roost-stage-{{ name }}
{%- endfor %}
{%- for path in etcd_files %}
      - file: roost-stage-{{ path }}
{%- endfor %}

# 3. Land: each file checked again (check_cmd) on its way in.
roost-etc:
  file.directory:
    - name: {{ roost.paths.etc }}
    - mode: '0755'

# Each file is rendered again from the same template and pillar as its
# staged copy (the same bytes), not copied from the stage: with test=True
# the stage is not written, and a bare node must still get its diff.
{%- for name, tmpl in files.items() %}
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
{%- endfor %}
{%- for name, policy in roost.policies | dictsort %}
roost-policy-{{ name }}:
  file.managed:
    - name: {{ roost.paths.policies }}/{{ name }}.yaml
    - source: salt://roost/files/policy.yaml.jinja
    - template: jinja
    - makedirs: True
    - mode: '0644'
    - context:
        name: {{ name | json }}
        policy: {{ policy | json }}
    - check_cmd: {{ roost.paths.check_staged }} policy
    - failhard: True
    - require:
      - cmd: roost-validate
{%- endfor %}

roost-policies:
  file.directory:
    - name: {{ roost.paths.policies }}
    - mode: '0755'
    - clean: True
    - require:
      - cmd: roost-validate
{%- for name in roost.policies | sort %}
      - file: roost-policy-{{ name }}
{%- endfor %}

# BIRD's directories. bird.conf gets a bootstrap BIRD can start from, unless
# roost-agent has written it already: the agent owns it from its first apply.
# A bird.conf roost did not write (the bird2 package's, say) is kept first
# as bird.conf.pre-roost, once; roost.clean puts it back.
roost-bird-etc:
  file.directory:
    - name: {{ roost.paths.bird_etc }}

roost-bird-conf-backup:
  cmd.run:
    - name: cp -a {{ roost.paths.bird_etc }}/bird.conf {{ roost.paths.bird_backup }} && echo "kept the host's bird.conf as {{ roost.paths.bird_backup }}"
    - onlyif: test -f {{ roost.paths.bird_etc }}/bird.conf
    - unless: {{ ('test -e ' ~ roost.paths.bird_backup ~ ' || ' ~ bird_conf_ours) | json }}
    - require:
      - cmd: roost-validate
      - file: roost-bird-etc

roost-bird-conf:
  file.managed:
    - name: {{ roost.paths.bird_etc }}/bird.conf
    - source: salt://roost/files/bird.conf.jinja
    - template: jinja
    - mode: '0640'
    - unless: "grep -q '^# bird.conf: generated by roost-agent' {{ roost.paths.bird_etc }}/bird.conf"
    - require:
      - cmd: roost-validate
      - cmd: roost-bird-conf-backup

roost-bird-run:
  file.directory:
    - name: {{ roost.paths.bird_run }}
    - mode: '0755'
