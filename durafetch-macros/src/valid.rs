//! Checks that the annotated item has the shape the expansion relies on, with errors pointing at
//! the part to change.

use crate::ast::{ObjectImpl, Target};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Signature};

pub fn check(target: &Target) -> syn::Result<()> {
    match target {
        Target::Object(object) => check_object(object),
        Target::Entry(entry) => check_entry(entry),
    }
}

fn check_object(object: &ObjectImpl) -> syn::Result<()> {
    let item = &object.item;
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(
            item.generics.span(),
            "#[durafetch] cannot instrument a generic Durable Object; Durable Object classes are concrete types",
        ));
    }
    let new = object.method("new").ok_or_else(|| {
        syn::Error::new(
            item.self_ty.span(),
            "#[durafetch] needs `fn new(state: State, env: Env) -> Self` in this impl, where it installs the change log",
        )
    })?;
    typed_inputs(&new.sig, 2, "`fn new(state: State, env: Env)`")?;
    let fetch = object.method("fetch").ok_or_else(|| {
        syn::Error::new(
            item.self_ty.span(),
            "#[durafetch] needs `async fn fetch(&self, req: Request)` in this impl, where it serves exports",
        )
    })?;
    if fetch.sig.asyncness.is_none() {
        return Err(syn::Error::new(fetch.sig.fn_token.span(), "`fetch` must be `async fn fetch(&self, req: Request)`"));
    }
    if !matches!(fetch.sig.inputs.first(), Some(FnArg::Receiver(_))) {
        return Err(syn::Error::new(fetch.sig.inputs.span(), "`fetch` must take `&self` first: `async fn fetch(&self, req: Request)`"));
    }
    if fetch.sig.inputs.len() != 2 {
        return Err(syn::Error::new(
            fetch.sig.inputs.span(),
            "`fetch` must take `&self` and one request: `async fn fetch(&self, req: Request)`",
        ));
    }
    Ok(())
}

const FETCH_ONLY: &str = "#[durafetch] serves the export API from the fetch handler; put it on the `#[event(fetch)]` function";

/// The names `#[event(..)]` gives a handler it has already expanded (`<name>_<event>_glue`),
/// for the events other than fetch: seen when `#[event]` is written above `#[durafetch]`.
const OTHER_EVENT_GLUE: [&str; 4] = ["_scheduled_glue", "_queue_glue", "_email_glue", "_connect_glue"];

fn check_entry(entry: &ItemFn) -> syn::Result<()> {
    let mut event_seen = false;
    for attr in &entry.attrs {
        if attr.path().is_ident("event") {
            event_seen = true;
            let handler: syn::Ident = attr.parse_args_with(|input: syn::parse::ParseStream| {
                let ident: syn::Ident = input.parse()?;
                let _: proc_macro2::TokenStream = input.parse()?;
                Ok(ident)
            })?;
            if handler != "fetch" {
                return Err(syn::Error::new(handler.span(), FETCH_ONLY));
            }
        }
    }
    // `#[event(..)]` above `#[durafetch]` has run first: only the name it gave the function
    // tells which event it is.
    let name = entry.sig.ident.to_string();
    if !event_seen && OTHER_EVENT_GLUE.iter().any(|glue| name.ends_with(glue)) {
        return Err(syn::Error::new(entry.sig.ident.span(), FETCH_ONLY));
    }
    let sig = &entry.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "#[durafetch] goes on an `async fn` fetch handler: `async fn main(req: Request, env: Env, ctx: Context)`",
        ));
    }
    typed_inputs(sig, 3, "`async fn main(req: Request, env: Env, ctx: Context)`")
}

/// Every input is a typed argument (no `self`), and there are `count` of them.
fn typed_inputs(sig: &Signature, count: usize, expected: &str) -> syn::Result<()> {
    if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
        return Err(syn::Error::new(r.span(), format!("expected {expected}, without `self`")));
    }
    if sig.inputs.len() != count {
        let span = if sig.inputs.is_empty() { sig.paren_token.span.join() } else { sig.inputs.span() };
        return Err(syn::Error::new(span, format!("expected {count} arguments: {expected}")));
    }
    Ok(())
}
