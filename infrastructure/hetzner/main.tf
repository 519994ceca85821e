locals {
  labels = {
    environment = var.environment
    purpose     = "torrust-tracker"
    managed_by  = "torrust-deploy"
  }
  anywhere = ["0.0.0.0/0", "::/0"]
}

resource "hcloud_ssh_key" "deploy" {
  name       = "${var.server_name}-deploy"
  public_key = var.ssh_public_key
  labels     = local.labels
}

resource "hcloud_firewall" "server" {
  name   = "${var.server_name}-firewall"
  labels = local.labels

  rule {
    description = "SSH"
    direction   = "in"
    protocol    = "tcp"
    port        = tostring(var.ssh_port)
    source_ips  = local.anywhere
  }

  dynamic "rule" {
    for_each = var.firewall_tcp_ports
    content {
      description = "public TCP ${rule.value}"
      direction   = "in"
      protocol    = "tcp"
      port        = tostring(rule.value)
      source_ips  = local.anywhere
    }
  }

  dynamic "rule" {
    for_each = var.firewall_udp_ports
    content {
      description = "public UDP ${rule.value}"
      direction   = "in"
      protocol    = "udp"
      port        = tostring(rule.value)
      source_ips  = local.anywhere
    }
  }

  rule {
    description = "ICMP (path MTU discovery, ping)"
    direction   = "in"
    protocol    = "icmp"
    source_ips  = local.anywhere
  }
}

resource "hcloud_server" "server" {
  name               = var.server_name
  server_type        = var.server_type
  location           = var.location
  image              = var.image
  ssh_keys           = [hcloud_ssh_key.deploy.id]
  firewall_ids       = [hcloud_firewall.server.id]
  user_data          = var.user_data
  labels             = local.labels
  delete_protection  = var.deletion_protection
  rebuild_protection = var.deletion_protection

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  lifecycle {
    # A changed template must not replace a running server: infra.bootstrap re-applies
    # the hardening instead.
    ignore_changes = [user_data, image, ssh_keys]
  }
}

# Created apart from the server and attached after it: the hardening script waits for
# the device, formats it once and mounts it at <deploy root>/storage.
resource "hcloud_volume" "data" {
  count             = var.data_volume_size > 0 ? 1 : 0
  name              = "${var.server_name}-data"
  size              = var.data_volume_size
  location          = var.location
  labels            = local.labels
  delete_protection = var.deletion_protection
}

resource "hcloud_volume_attachment" "data" {
  count     = var.data_volume_size > 0 ? 1 : 0
  volume_id = hcloud_volume.data[0].id
  server_id = hcloud_server.server.id
  automount = false
}
