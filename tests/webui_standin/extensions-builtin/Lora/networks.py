"""Stand-in of the built-in Lora's networks.py: the network tables and load_networks' lookup, rescan-on-miss
and failure behaviour (A1111 skips a missing name; Forge fails the whole batch)."""

import logging
import os

import network
from modules import FLAVOR, shared

extra_network_lora = None
available_networks = {}
available_network_aliases = {}
loaded_networks = []
networks_in_memory = {}
available_network_hash_lookup = {}
forbidden_network_aliases = {}
scan_count = 0  # stand-in only: how many full rescans happened


def load_network(name, network_on_disk):
    net = network.Network(name, network_on_disk)
    net.mtime = os.path.getmtime(network_on_disk.filename)
    return net


def _lookup(name):
    if name.lower() in forbidden_network_aliases:
        return available_networks.get(name, None)
    return available_network_aliases.get(name, None)


def load_networks(names, te_multipliers=None, unet_multipliers=None, dyn_dims=None):
    loaded_networks.clear()
    unavailable = [n for n in names if _lookup(n) is None]
    if unavailable:
        update_available_networks_by_names(unavailable)
    networks_on_disk = [_lookup(n) for n in names]
    if any(x is None for x in networks_on_disk):
        list_available_networks()
        networks_on_disk = [_lookup(n) for n in names]
    for i, (network_on_disk, name) in enumerate(zip(networks_on_disk, names, strict=True)):
        if network_on_disk is None:
            if FLAVOR == "forge":
                # Forge dereferences the missing entry: the exception drops every LoRA of the batch.
                loaded_networks.clear()
                raise AttributeError("'NoneType' object has no attribute 'filename'")
            logging.info(f"Couldn't find network with name {name}")
            continue
        net = load_network(name, network_on_disk)
        net.mentioned_name = name
        network_on_disk.read_hash()
        net.te_multiplier = te_multipliers[i] if te_multipliers else 1.0
        net.unet_multiplier = unet_multipliers[i] if unet_multipliers else 1.0
        net.dyn_dim = dyn_dims[i] if dyn_dims else 1.0
        loaded_networks.append(net)


def process_network_files(names=None):
    candidates = list(shared.walk_files(shared.cmd_opts.lora_dir, allowed_extensions=[".pt", ".ckpt", ".safetensors"]))
    if FLAVOR != "forge":
        candidates += list(shared.walk_files(shared.cmd_opts.lyco_dir_backcompat, allowed_extensions=[".pt", ".ckpt", ".safetensors"]))
    for filename in candidates:
        if os.path.isdir(filename):
            continue
        name = os.path.splitext(os.path.basename(filename))[0]
        if names and name not in names:
            continue
        entry = network.NetworkOnDisk(name, filename)
        available_networks[name] = entry
        if entry.alias in available_network_aliases:
            forbidden_network_aliases[entry.alias.lower()] = 1
        available_network_aliases[name] = entry
        available_network_aliases[entry.alias] = entry


def update_available_networks_by_names(names):
    process_network_files(names)


def list_available_networks():
    global scan_count
    scan_count += 1
    available_networks.clear()
    available_network_aliases.clear()
    forbidden_network_aliases.clear()
    available_network_hash_lookup.clear()
    forbidden_network_aliases.update({"none": 1, "Addams": 1})
    os.makedirs(shared.cmd_opts.lora_dir, exist_ok=True)
    process_network_files()


def infotext_pasted(infotext, params):
    pass


list_available_networks()
