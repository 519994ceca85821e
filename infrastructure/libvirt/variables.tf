# Written by the tool into .torrust/<env>/infra/libvirt/terraform.tfvars.json.

variable "server_name" {
  type        = string
  description = "Domain name of the VM and prefix of its volumes."
}

variable "environment" {
  type        = string
  description = "Environment name."
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
  description = "OpenSSH public key of the deploy user (already inside user_data)."
}

variable "user_data" {
  type        = string
  description = "Rendered cloud-init user-data (#cloud-config). Holds the server's private SSH host key."
  sensitive   = true
}

variable "data_volume_size" {
  type        = number
  description = "Size in GB of a second disk (/dev/vdb) mounted at the storage root; 0 for none."
}

variable "libvirt_uri" {
  type        = string
  description = "libvirt connection URI."
}

variable "pool" {
  type        = string
  description = "Storage pool for the disks."
}

variable "network" {
  type        = string
  description = "libvirt network (DHCP) the VM joins."
}

variable "base_image_url" {
  type        = string
  description = "Ubuntu 24.04 cloud image (URL or local path)."
}

variable "memory_mb" {
  type        = number
  description = "Memory in MB."
}

variable "vcpus" {
  type        = number
  description = "Virtual CPUs."
}

variable "disk_size_gb" {
  type        = number
  description = "System disk size in GB."
}
