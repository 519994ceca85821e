# Written by the tool into .torrust/<env>/infra/hetzner/terraform.tfvars.json.

variable "server_name" {
  type        = string
  description = "Server name and prefix of every resource."
}

variable "environment" {
  type        = string
  description = "Environment name (a label)."
}

variable "ssh_user" {
  type        = string
  description = "Deploy user cloud-init creates."
}

variable "ssh_port" {
  type        = number
  description = "SSH port sshd listens on once the hardening script ran."
}

variable "ssh_public_key" {
  type        = string
  description = "OpenSSH public key of the deploy user (also registered as the server's SSH key)."
}

variable "user_data" {
  type        = string
  description = "Rendered cloud-init user-data (#cloud-config). Holds the server's private SSH host key."
  sensitive   = true
}

variable "data_volume_size" {
  type        = number
  description = "Size in GB of a data volume mounted at the storage root; 0 for none."
  validation {
    condition     = var.data_volume_size == 0 || var.data_volume_size >= 10
    error_message = "A Hetzner volume has at least 10 GB (or 0: no volume)."
  }
}

variable "server_type" {
  type        = string
  description = "Server type, e.g. cx22 (hcloud server-type list)."
}

variable "location" {
  type        = string
  description = "Location, e.g. nbg1 (hcloud location list)."
}

variable "image" {
  type        = string
  description = "System image; the cloud-init template targets ubuntu-24.04."
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the server, its primary IPs and the volume from deletion and rebuild."
}

variable "firewall_tcp_ports" {
  type        = list(number)
  description = "Public TCP ports (HTTP, HTTPS) besides SSH."
}

variable "firewall_udp_ports" {
  type        = list(number)
  description = "Public UDP ports (UDP trackers, HTTP/3)."
}
