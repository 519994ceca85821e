# The same four outputs in every module: the tool reads them with `output -json`.

output "ipv4" {
  value = try([for a in libvirt_domain.vm.network_interface[0].addresses : a if !can(regex(":", a))][0], "")
}

output "ipv6" {
  value = try([for a in libvirt_domain.vm.network_interface[0].addresses : a if can(regex(":", a))][0], "")
}

output "ssh_user" {
  value = var.ssh_user
}

output "ssh_port" {
  value = var.ssh_port
}
