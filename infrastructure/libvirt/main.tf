resource "libvirt_volume" "base" {
  name   = "${var.server_name}-ubuntu-24.04-base.qcow2"
  pool   = var.pool
  source = var.base_image_url
  format = "qcow2"
}

resource "libvirt_volume" "system" {
  name           = "${var.server_name}.qcow2"
  pool           = var.pool
  base_volume_id = libvirt_volume.base.id
  size           = var.disk_size_gb * 1024 * 1024 * 1024
  format         = "qcow2"
}

resource "libvirt_volume" "data" {
  count  = var.data_volume_size > 0 ? 1 : 0
  name   = "${var.server_name}-data.qcow2"
  pool   = var.pool
  size   = var.data_volume_size * 1024 * 1024 * 1024
  format = "qcow2"
}

resource "libvirt_cloudinit_disk" "init" {
  name      = "${var.server_name}-cloudinit.iso"
  pool      = var.pool
  user_data = var.user_data
  meta_data = jsonencode({
    "instance-id"    = var.server_name
    "local-hostname" = var.server_name
  })
}

resource "libvirt_domain" "vm" {
  name      = var.server_name
  memory    = var.memory_mb
  vcpu      = var.vcpus
  cloudinit = libvirt_cloudinit_disk.init.id
  autostart = true

  # MySQL 8 needs x86-64-v2 (docker-library/mysql#1055): QEMU's default CPU model
  # lacks it; passing the host's CPU through provides it.
  cpu {
    mode = "host-passthrough"
  }

  disk {
    volume_id = libvirt_volume.system.id
  }

  dynamic "disk" {
    for_each = libvirt_volume.data
    content {
      volume_id = disk.value.id
    }
  }

  network_interface {
    network_name = var.network
    # apply waits for the DHCP lease so the ipv4 output is set; if it is still empty,
    # infra.refresh reads it again.
    wait_for_lease = true
  }

  console {
    type        = "pty"
    target_type = "serial"
    target_port = "0"
  }
}
