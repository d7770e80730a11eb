//! The attribute's own arguments: there are none; settings live in wrangler.toml.

use proc_macro2::TokenStream;
use syn::spanned::Spanned;

pub fn no_arguments(args: TokenStream) -> syn::Result<()> {
    if args.is_empty() {
        return Ok(());
    }
    Err(syn::Error::new(
        args.span(),
        "#[durafetch] takes no arguments; the worker name and classes go in wrangler.toml under [vars.DURAFETCH]",
    ))
}
