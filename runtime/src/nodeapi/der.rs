//! Just enough DER to read two things from an X.509 certificate: the subject's common
//! name (to authorize the control plane's client certificate) and the subject alternative
//! names (to know whether the node's serving certificate still covers its address).
//!
//! The certificate has already been parsed and verified by webpki (client certificates)
//! or was written by this node itself (serving certificate), so the reader only has to be
//! correct, not defensive about exotic encodings: anything unexpected is `None`.

use std::net::IpAddr;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
/// `[0] EXPLICIT Version` in `TBSCertificate`.
const TAG_VERSION: u8 = 0xa0;
/// `[3] EXPLICIT Extensions` in `TBSCertificate`.
const TAG_EXTENSIONS: u8 = 0xa3;
/// `dNSName [2] IA5String` in `GeneralName`.
const TAG_SAN_DNS: u8 = 0x82;
/// `iPAddress [7] OCTET STRING` in `GeneralName`.
const TAG_SAN_IP: u8 = 0x87;

/// 2.5.4.3, id-at-commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// 2.5.29.17, id-ce-subjectAltName.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// A subject alternative name of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AltName {
    /// A DNS name.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

/// One DER element: its tag and contents.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
}

/// Reads elements one after another from a byte slice.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn next(&mut self) -> Option<Element<'a>> {
        let (&tag, after_tag) = self.rest.split_first()?;
        let (&first, mut after_len) = after_tag.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            // Long form: the low bits count the length bytes that follow.
            let count = usize::from(first & 0x7f);
            if count == 0 || count > std::mem::size_of::<usize>() || after_len.len() < count {
                return None;
            }
            let mut len = 0usize;
            for &byte in &after_len[..count] {
                len = (len << 8) | usize::from(byte);
            }
            after_len = &after_len[count..];
            len
        };
        if after_len.len() < len {
            return None;
        }
        let (contents, rest) = after_len.split_at(len);
        self.rest = rest;
        Some(Element { tag, contents })
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let element = self.next()?;
        (element.tag == tag).then_some(element.contents)
    }
}

/// The elements of `TBSCertificate`, from `serialNumber` on (the version skipped).
fn tbs_fields(cert_der: &[u8]) -> Option<Reader<'_>> {
    let certificate = Reader::new(cert_der).expect(TAG_SEQUENCE)?;
    let tbs = Reader::new(certificate).expect(TAG_SEQUENCE)?;
    let mut fields = Reader::new(tbs);
    let mut peek = Reader::new(tbs);
    if peek.next()?.tag == TAG_VERSION {
        fields.next()?;
    }
    Some(fields)
}

/// The subject's common name(s) of a DER certificate; `None` when it cannot be read.
pub fn subject_common_names(cert_der: &[u8]) -> Option<Vec<String>> {
    let mut fields = tbs_fields(cert_der)?;
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        fields.next()?;
    }
    let subject = fields.expect(TAG_SEQUENCE)?;
    let mut names = Vec::new();
    let mut rdns = Reader::new(subject);
    while !rdns.is_empty() {
        let mut attributes = Reader::new(rdns.expect(TAG_SET)?);
        while !attributes.is_empty() {
            let mut attribute = Reader::new(attributes.expect(TAG_SEQUENCE)?);
            let oid = attribute.expect(TAG_OID)?;
            let value = attribute.next()?;
            if oid == OID_COMMON_NAME {
                // UTF8String, PrintableString or IA5String: all ASCII-compatible bytes.
                names.push(String::from_utf8(value.contents.to_vec()).ok()?);
            }
        }
    }
    Some(names)
}

/// The subject alternative names of a DER certificate (empty without the extension);
/// `None` when it cannot be read.
pub fn subject_alt_names(cert_der: &[u8]) -> Option<Vec<AltName>> {
    let mut fields = tbs_fields(cert_der)?;
    let mut names = Vec::new();
    while let Some(field) = fields.next() {
        if field.tag != TAG_EXTENSIONS {
            continue;
        }
        let mut extensions = Reader::new(Reader::new(field.contents).expect(TAG_SEQUENCE)?);
        while !extensions.is_empty() {
            let mut extension = Reader::new(extensions.expect(TAG_SEQUENCE)?);
            let oid = extension.expect(TAG_OID)?;
            let mut value = extension.next()?;
            if value.tag == TAG_BOOLEAN {
                value = extension.next()?;
            }
            if oid != OID_SUBJECT_ALT_NAME || value.tag != TAG_OCTET_STRING {
                continue;
            }
            let mut general_names = Reader::new(Reader::new(value.contents).expect(TAG_SEQUENCE)?);
            while let Some(name) = general_names.next() {
                match name.tag {
                    TAG_SAN_DNS => names.push(AltName::Dns(
                        String::from_utf8(name.contents.to_vec()).ok()?,
                    )),
                    TAG_SAN_IP => {
                        let ip = match name.contents.len() {
                            4 => IpAddr::from(<[u8; 4]>::try_from(name.contents).ok()?),
                            16 => IpAddr::from(<[u8; 16]>::try_from(name.contents).ok()?),
                            _ => return None,
                        };
                        names.push(AltName::Ip(ip));
                    }
                    _ => {}
                }
            }
        }
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn cert_der(common_name: &str, sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "skiff");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn reads_common_name_and_alt_names() {
        let der = cert_der(
            "skiff-apiserver-kubelet-client",
            vec![
                SanType::DnsName("node-1".try_into().expect("dns")),
                SanType::IpAddress("10.1.2.3".parse().expect("ip")),
                SanType::IpAddress("fd00::1".parse().expect("ip")),
            ],
        );
        assert_eq!(
            subject_common_names(&der),
            Some(vec!["skiff-apiserver-kubelet-client".to_string()])
        );
        assert_eq!(
            subject_alt_names(&der),
            Some(vec![
                AltName::Dns("node-1".into()),
                AltName::Ip("10.1.2.3".parse().expect("ip")),
                AltName::Ip("fd00::1".parse().expect("ip")),
            ])
        );
    }

    #[test]
    fn no_alt_names_is_empty_and_garbage_is_none() {
        let der = cert_der("x", Vec::new());
        assert_eq!(subject_alt_names(&der), Some(Vec::new()));
        assert_eq!(subject_common_names(&der[..20]), None);
        assert_eq!(subject_common_names(b"\x30\x85"), None);
    }
}
