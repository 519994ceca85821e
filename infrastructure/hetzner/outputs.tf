# The same four outputs in every module: the tool reads them with `output -json`.

output "ipv4" {
  value = hcloud_server.server.ipv4_address
}

output "ipv6" {
  value = hcloud_server.server.ipv6_address
}

output "ssh_user" {
  value = var.ssh_user
}

output "ssh_port" {
  value = var.ssh_port
}
