// TypeDoc plugin for holdfast's API reference. Two rules, both about types spelled inline:
//
// 1. An exported zod schema is shown as its zod type (`ZodObject`), without the type arguments
//    that spell its shape out again: the shape is documented once, on the options or snapshot
//    type inferred from it, and zod's internals (an enum's `{ a: 'a' }` map) have nothing to say.
// 2. A member of an anonymous object type (`latency: { p50; p95; p99 }`, an event's fields, an
//    inferred snapshot's shape) is documented by the declaration that owns the type, as TypeDoc
//    already treats a type alias's literal: when that owner has a comment, the member need not
//    have one. Named declarations (functions, classes, interfaces and their members, variables,
//    type aliases) must still be documented: `validation.notDocumented` fails the build.
import { Converter, ReflectionKind, ReflectionType } from 'typedoc';

/** Every reflection declared inside a type, nested types included. */
function declarationsIn(type, found = []) {
  if (!type || typeof type !== 'object') return found;
  if (type instanceof ReflectionType) found.push(type.declaration);
  for (const value of Object.values(type)) {
    if (Array.isArray(value)) for (const item of value) declarationsIn(item, found);
    else if (value && typeof value === 'object' && value.type && value !== type.declaration)
      declarationsIn(value, found);
  }
  return found;
}

const anonymous = (r) => r?.kindOf(ReflectionKind.TypeLiteral);
const signature = (r) => r?.kindOf(ReflectionKind.SomeSignature);

/** The named declaration whose type spells out the anonymous object `member` belongs to. */
function ownerOf(member) {
  let r = member.parent;
  while (r && (anonymous(r) || signature(r) || anonymous(r.parent))) r = r.parent;
  return r;
}

const documented = (r) => r.hasComment() || r.signatures?.some((s) => s.hasComment()) === true;

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    for (const variable of context.project.getReflectionsByKind(ReflectionKind.Variable)) {
      const type = variable.type;
      if (type?.type !== 'reference' || type.package !== 'zod' || !type.typeArguments) continue;
      for (const declaration of declarationsIn(type)) context.project.removeReflection(declaration);
      type.typeArguments = undefined;
    }
  });

  app.converter.on(Converter.EVENT_RESOLVE_END, (context) => {
    const project = context.project;
    const packages = app.options.getValue('packagesRequiringDocumentation');
    const exempt = new Set(app.options.getValue('intentionallyNotDocumented'));
    for (const member of project.getReflectionsByKind(ReflectionKind.Property | ReflectionKind.Method)) {
      if (!anonymous(member.parent) || documented(member)) continue;
      const owner = ownerOf(member);
      const symbol = project.getSymbolIdFromReflection(member);
      if (!owner || !documented(owner) || !symbol || !packages.includes(symbol.packageName)) continue;
      let underParameter = false;
      for (let r = member.parent; r; r = r.parent) underParameter ||= r.kindOf(ReflectionKind.Parameter);
      if (!underParameter) exempt.add(member.getFriendlyFullName());
    }
    app.options.setValue('intentionallyNotDocumented', [...exempt]);
  });
}
