//! The item `#[durafetch]` is attached to, parsed into the small model the other modules use.

use proc_macro2::TokenStream;
use syn::spanned::Spanned;
use syn::{ImplItem, ImplItemFn, Item, ItemFn, ItemImpl};

pub enum Target {
    /// `impl DurableObject for Class { fn new(..); async fn fetch(..); .. }`
    Object(ObjectImpl),
    /// The worker's `#[event(fetch)] async fn (req, env, ctx)`.
    Entry(ItemFn),
}

pub struct ObjectImpl {
    pub item: ItemImpl,
    /// The Rust type name, which is also the class name the registry records.
    pub class: syn::Ident,
}

impl ObjectImpl {
    pub fn method(&self, name: &str) -> Option<&ImplItemFn> {
        self.item.items.iter().find_map(|item| match item {
            ImplItem::Fn(f) if f.sig.ident == name => Some(f),
            _ => None,
        })
    }

    pub fn method_mut(&mut self, name: &str) -> Option<&mut ImplItemFn> {
        self.item.items.iter_mut().find_map(|item| match item {
            ImplItem::Fn(f) if f.sig.ident == name => Some(f),
            _ => None,
        })
    }
}

const WHERE_IT_GOES: &str = "#[durafetch] goes on `impl DurableObject for YourType` or on the worker's `#[event(fetch)]` function";

impl Target {
    pub fn parse(input: TokenStream) -> syn::Result<Self> {
        match syn::parse2::<Item>(input)? {
            Item::Fn(f) => Ok(Target::Entry(f)),
            Item::Impl(item) => {
                let Some((_, trait_path, _)) = &item.trait_ else {
                    return Err(syn::Error::new(item.self_ty.span(), WHERE_IT_GOES));
                };
                if trait_path.segments.last().is_none_or(|s| s.ident != "DurableObject") {
                    return Err(syn::Error::new(trait_path.span(), WHERE_IT_GOES));
                }
                let class = match &*item.self_ty {
                    syn::Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.clone()),
                    _ => None,
                };
                let class = class.ok_or_else(|| {
                    syn::Error::new(item.self_ty.span(), "#[durafetch] needs a named type: `impl DurableObject for YourType`")
                })?;
                Ok(Target::Object(ObjectImpl { item, class }))
            }
            other => Err(syn::Error::new(other.span(), WHERE_IT_GOES)),
        }
    }
}
