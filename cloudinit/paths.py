"""Where things live on a droplet (docs/internals.md, "Files on a droplet")."""

AGENT = "/usr/local/bin/ha-web-agent"
LIB_DIR = "/usr/local/lib/ha-web"
AGENT_ARCHIVE = f"{LIB_DIR}/ha-web-agent.pyz"
# The agent's package, which runcmd unpacks from AGENT_ARCHIVE and compiles.
AGENT_MODULE = f"{LIB_DIR}/ha_web_agent"
CHECK_NGINX = f"{LIB_DIR}/check-nginx"
BUILD_KEEPALIVED = f"{LIB_DIR}/build-keepalived"
CONFIG_DIR = "/etc/ha-web"
AGENT_CONFIG = f"{CONFIG_DIR}/agent.json"
TOKEN = f"{CONFIG_DIR}/token"
FIREWALL = f"{CONFIG_DIR}/firewall.nft"
METADATA_LOCK = f"{CONFIG_DIR}/metadata-lock.nft"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
PEERS_CONF = "/etc/keepalived/ha-web-peers.conf"
KEEPALIVED_PID = "/run/keepalived.pid"
STATE_DIR = "/run/ha-web"
HOLD_FILE = f"{STATE_DIR}/hold"
MAINTENANCE_FILE = f"{STATE_DIR}/maintenance"
# keepalived's state in one word, written by the agent; nginx serves it at ROLE_PATH so a peer
# can judge the holder over its public address when the VPC is cut (agent/holder_check.py).
ROLE_FILE = f"{STATE_DIR}/role"
ROLE_PATH = "/.ha-web/role"
# Root's alone: nginx's drop-in writes here from a shell as root, and ha-web, which owns
# STATE_DIR, could plant a symlink there that root's `echo >` would follow.
ROOT_STATE_DIR = "/run/ha-web-root"
NGINX_DOWN_FILE = f"{ROOT_STATE_DIR}/nginx-down"
DATA_DIR = "/var/lib/ha-web"
NGINX_SITE = "/etc/nginx/sites-available/ha-web"
NGINX_SITE_LINK = "/etc/nginx/sites-enabled/ha-web"
WEB_ROOT = "/var/www/ha-web"
SYSTEMD_DIR = "/etc/systemd/system"
NGINX_DROPIN = f"{SYSTEMD_DIR}/nginx.service.d/ha-web.conf"
TMPFILES = "/etc/tmpfiles.d/ha-web.conf"

AGENT_USER = "ha-web"
SCRIPT_USER = "keepalived_script"
