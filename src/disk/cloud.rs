//! Disk formats cloud platforms import, each reproducible:
//! - `disk.vhd`: a fixed VHD (Azure). `qemu-img` writes the raw bytes and a 512-byte footer
//!   holding a creation time and a random unique id; both are pinned (the build's epoch, an id
//!   derived from the image) and the footer checksum recomputed.
//! - `disk.tar.gz`: `disk.raw` alone in a GNU-format tar, gzip'd (Google Compute Engine).
//! - `disk.ova`: a POSIX tar of an OVF 2.0 descriptor (first, as the OVF specification asks),
//!   a stream-optimized VMDK (the format AWS and VMware import) and a manifest of SHA-256
//!   digests (VirtualBox, VMware).

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::convert::pin_converted;
use crate::base::identity::derived_guid;

/// Seconds from the Unix epoch to the VHD epoch, 2000-01-01 00:00:00 UTC.
const VHD_EPOCH: i64 = 946_684_800;

/// What an OVF descriptor says of the machine.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Image name (the virtual system's name).
    pub name: String,
    /// Image version.
    pub version: String,
    /// One-line description.
    pub description: String,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
}

fn qemu_img(args: &[&str], raw: &Path, out: &Path) -> Result<()> {
    crate::base::tool::run(
        std::process::Command::new("qemu-img")
            .args(args)
            .arg(raw)
            .arg(out),
        "qemu-utils",
        &format!("qemu-img {} of {} failed", args.join(" "), raw.display()),
    )?;
    Ok(())
}

/// Write a fixed VHD of `raw` at `out`, its footer pinned to `epoch` and `identity`.
pub fn fixed_vhd(raw: &Path, out: &Path, identity: &str, epoch: i64) -> Result<()> {
    let size = std::fs::metadata(raw)
        .with_context(|| format!("reading {}", raw.display()))?
        .len();
    if size % (1 << 20) != 0 {
        bail!(
            "{} is {size} bytes; Azure needs a virtual size that is a whole number of MiB",
            raw.display()
        );
    }
    // force_size: keep the exact size instead of rounding to a CHS geometry.
    qemu_img(
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vpc",
            "-o",
            "subformat=fixed,force_size=on",
        ],
        raw,
        out,
    )?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(out)
        .with_context(|| format!("opening {}", out.display()))?;
    let len = f.metadata()?.len();
    if len != size + 512 {
        bail!(
            "{}: {len} bytes, expected the raw disk and one 512-byte footer",
            out.display()
        );
    }
    use std::os::unix::fs::FileExt;
    let mut footer = [0u8; 512];
    f.read_exact_at(&mut footer, size)
        .with_context(|| format!("reading the footer of {}", out.display()))?;
    pin_vhd_footer(&mut footer, identity, epoch)?;
    f.write_all_at(&footer, size)
        .with_context(|| format!("writing the footer of {}", out.display()))?;
    f.sync_all()?;
    Ok(())
}

/// Pin a VHD footer's time stamp and unique id and recompute its checksum.
pub fn pin_vhd_footer(footer: &mut [u8; 512], identity: &str, epoch: i64) -> Result<()> {
    if &footer[..8] != b"conectix" {
        bail!("not a VHD footer (no `conectix` cookie)");
    }
    let stamp = u32::try_from((epoch - VHD_EPOCH).max(0)).unwrap_or(u32::MAX);
    footer[24..28].copy_from_slice(&stamp.to_be_bytes());
    footer[68..84].copy_from_slice(derived_guid(identity, "vhd-unique-id").as_bytes());
    footer[64..68].fill(0);
    let sum = footer
        .iter()
        .fold(0u32, |s, b| s.wrapping_add(u32::from(*b)));
    footer[64..68].copy_from_slice(&(!sum).to_be_bytes());
    Ok(())
}

fn header(h: tar::Header, name: &str, size: u64, epoch: i64) -> Result<tar::Header> {
    Ok(crate::base::fsx::tar_file_header(h, name, size, epoch)?)
}

/// Write `disk.raw` alone into a GNU tar, gzip'd, at `out` (what Compute Engine imports), as a
/// sparse member: its data and where it goes.
pub fn gce_tarball(raw: &Path, out: &Path, epoch: i64) -> Result<()> {
    let ctx = || format!("writing {} from {}", out.display(), raw.display());
    let file = File::create(out).with_context(ctx)?;
    // A fixed gzip header: no name, no time stamp.
    let gz = flate2::GzBuilder::new().write(
        std::io::BufWriter::new(file),
        flate2::Compression::default(),
    );
    let mut t = tar::Builder::new(gz);
    t.mode(tar::HeaderMode::Deterministic);
    super::sparse_tar::append(&mut t, raw, "disk.raw", epoch).with_context(ctx)?;
    let gz = t.into_inner().with_context(ctx)?;
    let w = gz.finish().with_context(ctx)?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .with_context(ctx)?
        .sync_all()
        .with_context(ctx)?;
    Ok(())
}

/// A reader that stops at Ctrl-C.
struct Interruptible(crate::base::sparse::SparseReader);

impl Read for Interruptible {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        crate::interrupt::check().map_err(std::io::Error::other)?;
        self.0.read(buf)
    }
}

/// The OVF 2.0 descriptor for one stream-optimized disk.
pub fn ovf(m: &Machine, disk_file: &str, disk_file_size: u64, capacity: u64) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let (name, version) = (esc(&m.name), esc(&m.version));
    let description = esc(&m.description);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/2" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/2" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>
    <File ovf:id="file1" ovf:href="{disk_file}" ovf:size="{disk_file_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks</Info>
    <Network ovf:name="network">
      <Description>The network the machine's first interface joins</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}-{version}">
    <Info>{description}</Info>
    <Name>{name}</Name>
    <ProductSection>
      <Info>The image</Info>
      <Product>{name}</Product>
      <Version>{version}</Version>
    </ProductSection>
    <OperatingSystemSection ovf:id="96">
      <Info>Debian GNU/Linux, 64-bit</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware: UEFI firmware, one SATA disk, one network interface</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}-{version}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory size</rasd:Description>
        <rasd:ElementName>{mem} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{mem}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Description>SATA controller</rasd:Description>
        <rasd:ElementName>sata0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>AHCI</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>disk0</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>network</rasd:Connection>
        <rasd:ElementName>ethernet0</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#,
        cpus = m.cpus,
        mem = m.memory_mib,
    )
}

/// Write `out` as an OVA: the OVF descriptor, a stream-optimized VMDK of `raw` and a SHA-256
/// manifest, in that order, in a POSIX tar. `scratch` holds the VMDK while it is made.
pub fn ova(
    raw: &Path,
    out: &Path,
    scratch: &Path,
    m: &Machine,
    identity: &str,
    epoch: i64,
) -> Result<()> {
    let ctx = || format!("writing {}", out.display());
    let capacity = std::fs::metadata(raw).with_context(ctx)?.len();
    let stem = format!("{}-{}", m.name, m.version);
    let vmdk_name = format!("{stem}-disk1.vmdk");
    let vmdk = scratch.join(&vmdk_name);
    qemu_img(
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "subformat=streamOptimized",
        ],
        raw,
        &vmdk,
    )?;
    pin_converted(&vmdk, "vmdk", identity)?;
    let vmdk_size = std::fs::metadata(&vmdk).with_context(ctx)?.len();
    let descriptor = ovf(m, &vmdk_name, vmdk_size, capacity);
    let (vmdk_sha, _) = crate::base::fsx::sha256_path(&vmdk)?;
    let manifest = format!(
        "SHA256({stem}.ovf)= {}\nSHA256({vmdk_name})= {vmdk_sha}\n",
        hex::encode(Sha256::digest(descriptor.as_bytes())),
    );
    let file = File::create(out).with_context(ctx)?;
    let mut t = tar::Builder::new(std::io::BufWriter::new(file));
    t.mode(tar::HeaderMode::Deterministic);
    let h = header(
        tar::Header::new_ustar(),
        &format!("{stem}.ovf"),
        descriptor.len() as u64,
        epoch,
    )?;
    t.append(&h, descriptor.as_bytes()).with_context(ctx)?;
    let h = header(tar::Header::new_ustar(), &vmdk_name, vmdk_size, epoch)?;
    let vmdk_file = File::open(&vmdk)
        .and_then(crate::base::sparse::SparseReader::new)
        .with_context(ctx)?;
    t.append(&h, Interruptible(vmdk_file)).with_context(ctx)?;
    let h = header(
        tar::Header::new_ustar(),
        &format!("{stem}.mf"),
        manifest.len() as u64,
        epoch,
    )?;
    t.append(&h, manifest.as_bytes()).with_context(ctx)?;
    let mut w = t.into_inner().with_context(ctx)?;
    w.flush().with_context(ctx)?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .with_context(ctx)?
        .sync_all()
        .with_context(ctx)?;
    std::fs::remove_file(&vmdk).with_context(|| format!("removing {}", vmdk.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vhd_footer_is_pinned_and_its_checksum_holds() {
        let mut f = [0u8; 512];
        f[..8].copy_from_slice(b"conectix");
        f[24..28].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        f[68..84].copy_from_slice(&[0xaa; 16]);
        let mut g = f;
        pin_vhd_footer(&mut f, "img", VHD_EPOCH + 86_400).unwrap();
        pin_vhd_footer(&mut g, "img", VHD_EPOCH + 86_400).unwrap();
        assert_eq!(f, g);
        assert_eq!(u32::from_be_bytes(f[24..28].try_into().unwrap()), 86_400);
        assert_ne!(&f[68..84], &[0xaa; 16]);
        // The checksum is the ones' complement of the sum of every other byte.
        let stored = u32::from_be_bytes(f[64..68].try_into().unwrap());
        let sum = f
            .iter()
            .enumerate()
            .filter(|(i, _)| !(64..68).contains(i))
            .fold(0u32, |s, (_, b)| s.wrapping_add(u32::from(*b)));
        assert_eq!(stored, !sum);
        assert!(pin_vhd_footer(&mut [0u8; 512], "img", 0).is_err());
    }

    #[test]
    fn the_ovf_escapes_what_the_profile_wrote() {
        let m = Machine {
            name: "vm".into(),
            version: "1.0.0".into(),
            description: "a <b> & \"c\"".into(),
            memory_mib: 1024,
            cpus: 2,
        };
        let x = ovf(&m, "vm-1.0.0-disk1.vmdk", 10, 20);
        assert!(
            x.contains("<Info>a &lt;b&gt; &amp; &quot;c&quot;</Info>"),
            "{x}"
        );
        assert!(x.contains("ovf:capacity=\"20\""));
        assert!(x.contains("<rasd:VirtualQuantity>1024</rasd:VirtualQuantity>"));
    }
}
